package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// This file is a small pickle reader for the subset of the format torch.save emits (protocol
// 2, plus the protocol 4/5 opcodes a newer writer might use). It builds plain Go values and
// never runs code: callables (globals) are values, and REDUCE/NEWOBJ are handed to a callback
// that knows the few torch functions a state dict uses.

// Python values as the unpickler builds them.
type (
	pyTuple []any
	pyList  struct{ items []any }
	pyDict  struct {
		keys []any
		vals []any
	}
	pyGlobal struct{ module, name string }
	// pyObject is the result of calling a callable the reader does not know.
	pyObject struct {
		callable any
		args     pyTuple
	}
)

// get returns the value stored under a string key.
func (d *pyDict) get(key string) (any, bool) {
	for i, k := range d.keys {
		if s, ok := k.(string); ok && s == key {
			return d.vals[i], true
		}
	}
	return nil, false
}

// Pickle opcodes, named, spelt and grouped as in CPython's pickletools opcode table, with the
// protocol that introduced each. Only the opcodes this reader handles are named here.
const (
	// Ways to spell integers.
	opBININT  = 'J'    // protocol 1
	opBININT1 = 'K'    // protocol 1
	opBININT2 = 'M'    // protocol 1
	opLONG1   = '\x8a' // protocol 2
	opLONG4   = '\x8b' // protocol 2

	// Ways to spell strings (8-bit, not Unicode).
	opBINSTRING       = 'T' // protocol 1
	opSHORT_BINSTRING = 'U' // protocol 1

	// Bytes and bytearrays.
	opBINBYTES       = 'B'    // protocol 3
	opSHORT_BINBYTES = 'C'    // protocol 3
	opBINBYTES8      = '\x8e' // protocol 4
	opBYTEARRAY8     = '\x96' // protocol 5

	// Ways to spell None and bools.
	opNONE     = 'N'    // protocol 0
	opNEWTRUE  = '\x88' // protocol 2
	opNEWFALSE = '\x89' // protocol 2

	// Ways to spell Unicode strings.
	opSHORT_BINUNICODE = '\x8c' // protocol 4
	opBINUNICODE       = 'X'    // protocol 1
	opBINUNICODE8      = '\x8d' // protocol 4

	// Ways to spell floats.
	opBINFLOAT = 'G' // protocol 1

	// Ways to build lists.
	opEMPTY_LIST = ']' // protocol 1
	opAPPEND     = 'a' // protocol 0
	opAPPENDS    = 'e' // protocol 1
	opLIST       = 'l' // protocol 0

	// Ways to build tuples.
	opEMPTY_TUPLE = ')'    // protocol 1
	opTUPLE       = 't'    // protocol 0
	opTUPLE1      = '\x85' // protocol 2
	opTUPLE2      = '\x86' // protocol 2
	opTUPLE3      = '\x87' // protocol 2

	// Ways to build dicts.
	opEMPTY_DICT = '}' // protocol 1
	opDICT       = 'd' // protocol 0
	opSETITEM    = 's' // protocol 0
	opSETITEMS   = 'u' // protocol 1

	// Ways to build sets and frozensets.
	opEMPTY_SET = '\x8f' // protocol 4
	opADDITEMS  = '\x90' // protocol 4
	opFROZENSET = '\x91' // protocol 4

	// Stack manipulation.
	opPOP      = '0' // protocol 0
	opDUP      = '2' // protocol 0
	opMARK     = '(' // protocol 0
	opPOP_MARK = '1' // protocol 1

	// Memo manipulation.
	opGET         = 'g'    // protocol 0
	opBINGET      = 'h'    // protocol 1
	opLONG_BINGET = 'j'    // protocol 1
	opPUT         = 'p'    // protocol 0
	opBINPUT      = 'q'    // protocol 1
	opLONG_BINPUT = 'r'    // protocol 1
	opMEMOIZE     = '\x94' // protocol 4

	// Push a class object, or module function, on the stack, via its module and name.
	opGLOBAL       = 'c'    // protocol 0
	opSTACK_GLOBAL = '\x93' // protocol 4

	// Ways to build objects of classes pickle doesn't know about directly.
	opREDUCE    = 'R'    // protocol 0
	opBUILD     = 'b'    // protocol 0
	opNEWOBJ    = '\x81' // protocol 2
	opNEWOBJ_EX = '\x92' // protocol 4

	// Machine control.
	opPROTO = '\x80' // protocol 2
	opSTOP  = '.'    // protocol 0

	// Framing support.
	opFRAME = '\x95' // protocol 4

	// Ways to deal with persistent IDs.
	opPERSID    = 'P' // protocol 0
	opBINPERSID = 'Q' // protocol 1
)

type unpickler struct {
	data    []byte
	pos     int
	stack   []any
	marks   []int
	memo    map[uint64]any
	persist func(pid any) (any, error)
	reduce  func(callable any, args pyTuple) (any, error)
}

// unpickle runs the pickle program in data and returns the value STOP leaves on the stack.
func unpickle(data []byte, persist func(any) (any, error), reduce func(any, pyTuple) (any, error)) (any, error) {
	u := &unpickler{data: data, memo: map[uint64]any{}, persist: persist, reduce: reduce}
	return u.run()
}

func (u *unpickler) read(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, fmt.Errorf("truncated pickle: need %d bytes at offset %d, %d left", n, u.pos, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

func (u *unpickler) readUint(n int) (uint64, error) {
	b, err := u.read(uint64(n))
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (u *unpickler) readLine() (string, error) {
	i := strings.IndexByte(string(u.data[u.pos:min(len(u.data), u.pos+4096)]), '\n')
	if i < 0 {
		return "", fmt.Errorf("truncated pickle: no newline after offset %d", u.pos)
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, fmt.Errorf("corrupt pickle: stack underflow at offset %d", u.pos)
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, fmt.Errorf("corrupt pickle: stack underflow at offset %d", u.pos)
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items pushed since the last MARK and removes them and the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, fmt.Errorf("corrupt pickle: no MARK at offset %d", u.pos)
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) popN(n int) ([]any, error) {
	items := make([]any, n)
	for i := n - 1; i >= 0; i-- {
		v, err := u.pop()
		if err != nil {
			return nil, err
		}
		items[i] = v
	}
	return items, nil
}

func (u *unpickler) memoGet(k uint64) error {
	v, ok := u.memo[k]
	if !ok {
		return fmt.Errorf("corrupt pickle: memo key %d not found at offset %d", k, u.pos)
	}
	u.push(v)
	return nil
}

func (u *unpickler) memoPut(k uint64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[k] = v
	return nil
}

func setItems(d any, items []any, pos int) error {
	dict, ok := d.(*pyDict)
	if !ok {
		return fmt.Errorf("corrupt pickle: SETITEM(S) on %T at offset %d", d, pos)
	}
	if len(items)%2 != 0 {
		return fmt.Errorf("corrupt pickle: odd number of dict items at offset %d", pos)
	}
	for i := 0; i < len(items); i += 2 {
		dict.keys = append(dict.keys, items[i])
		dict.vals = append(dict.vals, items[i+1])
	}
	return nil
}

func appendItems(l any, items []any, pos int) error {
	list, ok := l.(*pyList)
	if !ok {
		return fmt.Errorf("corrupt pickle: APPEND(S) on %T at offset %d", l, pos)
	}
	list.items = append(list.items, items...)
	return nil
}

// decodeLong reads a little-endian two's complement integer of up to 8 bytes.
func decodeLong(b []byte) (int64, error) {
	if len(b) > 8 {
		return 0, fmt.Errorf("integer of %d bytes does not fit in int64", len(b))
	}
	if len(b) == 0 {
		return 0, nil
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if shift := 64 - 8*len(b); shift > 0 {
		return int64(v<<shift) >> shift, nil
	}
	return int64(v), nil
}

func (u *unpickler) run() (any, error) {
	for {
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("truncated pickle: no STOP opcode")
		}
		op := u.data[u.pos]
		u.pos++
		if err := u.step(op); err != nil {
			if err == errStop {
				if len(u.stack) != 1 {
					return nil, fmt.Errorf("corrupt pickle: STOP with %d values on the stack", len(u.stack))
				}
				return u.stack[0], nil
			}
			return nil, err
		}
	}
}

var errStop = fmt.Errorf("stop")

// opcode is one row of the dispatch table: an opcode's pickletools name and the method that
// runs it (one method serves a family, so it is passed the opcode byte), or nil for an opcode
// this reader refuses.
type opcode struct {
	name string
	load func(u *unpickler, op byte) error
}

// opcodes is the dispatch table, in the order and groups of pickletools' opcode table. It
// names every opcode pickletools knows; the last group, with no methods, is those torch.save
// does not write, so that an error can name them.
var opcodes = [256]opcode{
	// Ways to spell integers.
	opBININT:  {"BININT", (*unpickler).loadInt},
	opBININT1: {"BININT1", (*unpickler).loadInt},
	opBININT2: {"BININT2", (*unpickler).loadInt},
	opLONG1:   {"LONG1", (*unpickler).loadInt},
	opLONG4:   {"LONG4", (*unpickler).loadInt},

	// Ways to spell strings (8-bit, not Unicode).
	opBINSTRING:       {"BINSTRING", (*unpickler).loadString},
	opSHORT_BINSTRING: {"SHORT_BINSTRING", (*unpickler).loadString},

	// Bytes and bytearrays.
	opBINBYTES:       {"BINBYTES", (*unpickler).loadString},
	opSHORT_BINBYTES: {"SHORT_BINBYTES", (*unpickler).loadString},
	opBINBYTES8:      {"BINBYTES8", (*unpickler).loadString},
	opBYTEARRAY8:     {"BYTEARRAY8", (*unpickler).loadString},

	// Ways to spell None and bools.
	opNONE:     {"NONE", (*unpickler).loadConst},
	opNEWTRUE:  {"NEWTRUE", (*unpickler).loadConst},
	opNEWFALSE: {"NEWFALSE", (*unpickler).loadConst},

	// Ways to spell Unicode strings.
	opSHORT_BINUNICODE: {"SHORT_BINUNICODE", (*unpickler).loadString},
	opBINUNICODE:       {"BINUNICODE", (*unpickler).loadString},
	opBINUNICODE8:      {"BINUNICODE8", (*unpickler).loadString},

	// Ways to spell floats.
	opBINFLOAT: {"BINFLOAT", (*unpickler).loadFloat},

	// Ways to build lists.
	opEMPTY_LIST: {"EMPTY_LIST", (*unpickler).loadList},
	opAPPEND:     {"APPEND", (*unpickler).loadAdd},
	opAPPENDS:    {"APPENDS", (*unpickler).loadAdd},
	opLIST:       {"LIST", (*unpickler).loadList},

	// Ways to build tuples.
	opEMPTY_TUPLE: {"EMPTY_TUPLE", (*unpickler).loadTuple},
	opTUPLE:       {"TUPLE", (*unpickler).loadTuple},
	opTUPLE1:      {"TUPLE1", (*unpickler).loadTuple},
	opTUPLE2:      {"TUPLE2", (*unpickler).loadTuple},
	opTUPLE3:      {"TUPLE3", (*unpickler).loadTuple},

	// Ways to build dicts.
	opEMPTY_DICT: {"EMPTY_DICT", (*unpickler).loadDict},
	opDICT:       {"DICT", (*unpickler).loadDict},
	opSETITEM:    {"SETITEM", (*unpickler).loadAdd},
	opSETITEMS:   {"SETITEMS", (*unpickler).loadAdd},

	// Ways to build sets and frozensets.
	opEMPTY_SET: {"EMPTY_SET", (*unpickler).loadList},
	opADDITEMS:  {"ADDITEMS", (*unpickler).loadAdd},
	opFROZENSET: {"FROZENSET", (*unpickler).loadList},

	// Stack manipulation.
	opPOP:      {"POP", (*unpickler).loadStack},
	opDUP:      {"DUP", (*unpickler).loadStack},
	opMARK:     {"MARK", (*unpickler).loadStack},
	opPOP_MARK: {"POP_MARK", (*unpickler).loadStack},

	// Memo manipulation.
	opGET:         {"GET", (*unpickler).loadMemo},
	opBINGET:      {"BINGET", (*unpickler).loadMemo},
	opLONG_BINGET: {"LONG_BINGET", (*unpickler).loadMemo},
	opPUT:         {"PUT", (*unpickler).loadMemo},
	opBINPUT:      {"BINPUT", (*unpickler).loadMemo},
	opLONG_BINPUT: {"LONG_BINPUT", (*unpickler).loadMemo},
	opMEMOIZE:     {"MEMOIZE", (*unpickler).loadMemo},

	// Push a class object, or module function, on the stack, via its module and name.
	opGLOBAL:       {"GLOBAL", (*unpickler).loadGlobal},
	opSTACK_GLOBAL: {"STACK_GLOBAL", (*unpickler).loadGlobal},

	// Ways to build objects of classes pickle doesn't know about directly.
	opREDUCE:    {"REDUCE", (*unpickler).loadCall},
	opBUILD:     {"BUILD", (*unpickler).loadBuild},
	opNEWOBJ:    {"NEWOBJ", (*unpickler).loadCall},
	opNEWOBJ_EX: {"NEWOBJ_EX", (*unpickler).loadCall},

	// Machine control.
	opPROTO: {"PROTO", (*unpickler).loadControl},
	opSTOP:  {"STOP", (*unpickler).loadControl},

	// Framing support.
	opFRAME: {"FRAME", (*unpickler).loadControl},

	// Ways to deal with persistent IDs.
	opPERSID:    {"PERSID", (*unpickler).loadPersid},
	opBINPERSID: {"BINPERSID", (*unpickler).loadPersid},

	// Refused: the text forms of protocol 0, old-style class instances, the extension registry
	// and out-of-band buffers.
	'I': {"INT", nil}, 'L': {"LONG", nil}, 'S': {"STRING", nil}, 'V': {"UNICODE", nil}, 'F': {"FLOAT", nil},
	'i': {"INST", nil}, 'o': {"OBJ", nil},
	'\x82': {"EXT1", nil}, '\x83': {"EXT2", nil}, '\x84': {"EXT4", nil},
	'\x97': {"NEXT_BUFFER", nil}, '\x98': {"READONLY_BUFFER", nil},
}

// step runs opcode op, read from offset u.pos-1.
func (u *unpickler) step(op byte) error {
	o := &opcodes[op]
	if o.load != nil {
		return o.load(u, op)
	}
	name := ""
	if o.name != "" {
		name = " (" + o.name + ")"
	}
	return fmt.Errorf("unsupported pickle opcode 0x%02x%s at offset %d", op, name, u.pos-1)
}

// operandSize is the width in bytes of an opcode's little-endian integer argument, or of the
// length prefix of its payload (pickletools' uint1, uint2, int4/uint4 and uint8 arguments, and
// the counted strings, bytes and longs).
func operandSize(op byte) int {
	switch op {
	case opBININT1, opLONG1, opSHORT_BINSTRING, opSHORT_BINBYTES, opSHORT_BINUNICODE, opBINGET, opBINPUT, opPROTO:
		return 1
	case opBININT2:
		return 2
	case opBINBYTES8, opBYTEARRAY8, opBINUNICODE8, opFRAME:
		return 8
	}
	return 4 // BININT, LONG4, BINSTRING, BINBYTES, BINUNICODE, LONG_BINGET, LONG_BINPUT
}

// loadInt runs BININT, BININT1, BININT2 (fixed-width integers) and LONG1, LONG4 (a counted
// little-endian two's complement integer, here at most 8 bytes).
func (u *unpickler) loadInt(op byte) error {
	v, err := u.readUint(operandSize(op))
	if err != nil {
		return err
	}
	switch op {
	case opBININT:
		u.push(int64(int32(uint32(v))))
	case opBININT1, opBININT2:
		u.push(int64(v))
	default: // LONG1, LONG4: v is the number of bytes
		b, err := u.read(v)
		if err != nil {
			return err
		}
		n, err := decodeLong(b)
		if err != nil {
			return fmt.Errorf("corrupt pickle at offset %d: %w", u.pos, err)
		}
		u.push(n)
	}
	return nil
}

// loadString runs the counted strings: BINSTRING, SHORT_BINSTRING and the BINUNICODE family
// push a string; the BINBYTES family and BYTEARRAY8 push the bytes (a slice of the pickle).
func (u *unpickler) loadString(op byte) error {
	n, err := u.readUint(operandSize(op))
	if err != nil {
		return err
	}
	b, err := u.read(n)
	if err != nil {
		return err
	}
	switch op {
	case opBINBYTES, opSHORT_BINBYTES, opBINBYTES8, opBYTEARRAY8:
		u.push(b)
	default:
		u.push(string(b))
	}
	return nil
}

// loadConst runs NONE, NEWTRUE and NEWFALSE.
func (u *unpickler) loadConst(op byte) error {
	switch op {
	case opNEWTRUE:
		u.push(true)
	case opNEWFALSE:
		u.push(false)
	default:
		u.push(nil)
	}
	return nil
}

// loadFloat runs BINFLOAT: a big-endian IEEE 754 double.
func (u *unpickler) loadFloat(byte) error {
	b, err := u.read(8)
	if err != nil {
		return err
	}
	u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	return nil
}

// loadList runs EMPTY_LIST, LIST and, as lists, EMPTY_SET and FROZENSET.
func (u *unpickler) loadList(op byte) error {
	l := &pyList{}
	if op == opLIST || op == opFROZENSET {
		items, err := u.popMark()
		if err != nil {
			return err
		}
		l.items = items
	}
	u.push(l)
	return nil
}

// loadTuple runs EMPTY_TUPLE, TUPLE (the items above the last MARK) and TUPLE1..TUPLE3.
func (u *unpickler) loadTuple(op byte) error {
	if op == opEMPTY_TUPLE {
		u.push(pyTuple{})
		return nil
	}
	var items []any
	var err error
	if op == opTUPLE {
		items, err = u.popMark()
	} else {
		items, err = u.popN(int(op-opTUPLE1) + 1)
	}
	if err != nil {
		return err
	}
	u.push(pyTuple(items))
	return nil
}

// loadDict runs EMPTY_DICT and DICT (key, value pairs above the last MARK).
func (u *unpickler) loadDict(op byte) error {
	d := &pyDict{}
	if op == opDICT {
		items, err := u.popMark()
		if err != nil {
			return err
		}
		if err := setItems(d, items, u.pos); err != nil {
			return err
		}
	}
	u.push(d)
	return nil
}

// loadAdd runs APPEND, APPENDS, ADDITEMS (lists and sets) and SETITEM, SETITEMS (dicts): the
// values on top of the stack are added to the container below them.
func (u *unpickler) loadAdd(op byte) error {
	var items []any
	var err error
	switch op {
	case opAPPEND:
		items, err = u.popN(1)
	case opSETITEM:
		items, err = u.popN(2)
	default: // APPENDS, ADDITEMS, SETITEMS: the values above the last MARK
		items, err = u.popMark()
	}
	if err != nil {
		return err
	}
	c, err := u.top()
	if err != nil {
		return err
	}
	if op == opSETITEM || op == opSETITEMS {
		return setItems(c, items, u.pos)
	}
	return appendItems(c, items, u.pos)
}

// loadStack runs MARK, POP, POP_MARK and DUP.
func (u *unpickler) loadStack(op byte) error {
	var err error
	switch op {
	case opMARK:
		u.marks = append(u.marks, len(u.stack))
	case opPOP:
		_, err = u.pop()
	case opPOP_MARK:
		_, err = u.popMark()
	case opDUP:
		var v any
		if v, err = u.top(); err == nil {
			u.push(v)
		}
	}
	return err
}

// loadMemo runs the memo opcodes: GET, BINGET, LONG_BINGET push a memo entry; PUT, BINPUT,
// LONG_BINPUT and MEMOIZE (under the next free key) store the top of the stack.
func (u *unpickler) loadMemo(op byte) error {
	var k uint64
	var err error
	switch op {
	case opMEMOIZE:
		k = uint64(len(u.memo))
	case opGET, opPUT:
		k, err = u.readDecimalKey()
	default:
		k, err = u.readUint(operandSize(op))
	}
	if err != nil {
		return err
	}
	if op == opGET || op == opBINGET || op == opLONG_BINGET {
		return u.memoGet(k)
	}
	return u.memoPut(k)
}

// readDecimalKey reads the memo key of a text GET or PUT: a decimal number and a newline.
func (u *unpickler) readDecimalKey() (uint64, error) {
	s, err := u.readLine()
	if err != nil {
		return 0, err
	}
	k, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("corrupt pickle: memo key %q at offset %d", s, u.pos)
	}
	return k, nil
}

// loadGlobal runs GLOBAL (module and name as two text lines) and STACK_GLOBAL (module and name
// as two strings on the stack).
func (u *unpickler) loadGlobal(op byte) error {
	var mod, name string
	if op == opGLOBAL {
		var err error
		if mod, err = u.readLine(); err != nil {
			return err
		}
		if name, err = u.readLine(); err != nil {
			return err
		}
	} else {
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		var ok1, ok2 bool
		mod, ok1 = items[0].(string)
		name, ok2 = items[1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("corrupt pickle: STACK_GLOBAL needs two strings at offset %d", u.pos)
		}
	}
	u.push(pyGlobal{mod, name})
	return nil
}

// loadCall runs REDUCE (callable, args), NEWOBJ (class, args) and NEWOBJ_EX (class, args,
// kwargs; the keyword arguments are dropped) through the reduce callback.
func (u *unpickler) loadCall(op byte) error {
	n := 2
	if op == opNEWOBJ_EX {
		n = 3
	}
	items, err := u.popN(n)
	if err != nil {
		return err
	}
	args, ok := items[1].(pyTuple)
	if !ok {
		return fmt.Errorf("corrupt pickle: call arguments are %T, not a tuple, at offset %d", items[1], u.pos)
	}
	v, err := u.reduce(items[0], args)
	if err != nil {
		return err
	}
	u.push(v)
	return nil
}

// loadBuild runs BUILD: the state only sets attributes, which nothing here needs, so it is
// dropped and the object kept.
func (u *unpickler) loadBuild(byte) error {
	if _, err := u.pop(); err != nil {
		return err
	}
	_, err := u.top()
	return err
}

// loadControl runs STOP, and PROTO and FRAME, whose protocol version and frame length are
// skipped: the reader holds the whole pickle and takes any opcode it knows in any protocol.
func (u *unpickler) loadControl(op byte) error {
	if op == opSTOP {
		return errStop
	}
	_, err := u.read(uint64(operandSize(op)))
	return err
}

// loadPersid runs PERSID (the id is a text line) and BINPERSID (the id is on the stack)
// through the persist callback.
func (u *unpickler) loadPersid(op byte) error {
	var pid any
	var err error
	if op == opPERSID {
		pid, err = u.readLine()
	} else {
		pid, err = u.pop()
	}
	if err != nil {
		return err
	}
	v, err := u.persist(pid)
	if err != nil {
		return err
	}
	u.push(v)
	return nil
}
