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

// Pickle opcodes, named and grouped as in CPython's pickletools opcode table (the protocol that
// introduced one is noted where it is above 1). Only the opcodes this reader handles are named;
// the rest are refused.
const (
	// Ways to spell integers.
	opBININT  = 'J'
	opBININT1 = 'K'
	opBININT2 = 'M'
	opLONG1   = 0x8a // protocol 2
	opLONG4   = 0x8b // protocol 2

	// Ways to spell strings (8-bit, not Unicode).
	opBINSTRING       = 'T'
	opSHORT_BINSTRING = 'U'

	// Bytes (protocol 3 and higher) and bytearray (protocol 5 and higher).
	opBINBYTES       = 'B'
	opSHORT_BINBYTES = 'C'
	opBINBYTES8      = 0x8e // protocol 4
	opBYTEARRAY8     = 0x96 // protocol 5

	// Ways to spell None and bools.
	opNONE     = 'N'
	opNEWTRUE  = 0x88 // protocol 2
	opNEWFALSE = 0x89 // protocol 2

	// Ways to spell Unicode strings.
	opSHORT_BINUNICODE = 0x8c // protocol 4
	opBINUNICODE       = 'X'
	opBINUNICODE8      = 0x8d // protocol 4

	// Ways to spell floats.
	opBINFLOAT = 'G'

	// Ways to build lists.
	opEMPTY_LIST = ']'
	opAPPEND     = 'a'
	opAPPENDS    = 'e'
	opLIST       = 'l'

	// Ways to build tuples.
	opEMPTY_TUPLE = ')'
	opTUPLE       = 't'
	opTUPLE1      = 0x85 // protocol 2
	opTUPLE2      = 0x86 // protocol 2
	opTUPLE3      = 0x87 // protocol 2

	// Ways to build dicts.
	opEMPTY_DICT = '}'
	opDICT       = 'd'
	opSETITEM    = 's'
	opSETITEMS   = 'u'

	// Ways to build sets and frozensets (protocol 4).
	opEMPTY_SET = 0x8f
	opADDITEMS  = 0x90
	opFROZENSET = 0x91

	// Stack manipulation.
	opPOP      = '0'
	opDUP      = '2'
	opMARK     = '('
	opPOP_MARK = '1'

	// Memo manipulation.
	opGET         = 'g'
	opBINGET      = 'h'
	opLONG_BINGET = 'j'
	opPUT         = 'p'
	opBINPUT      = 'q'
	opLONG_BINPUT = 'r'
	opMEMOIZE     = 0x94 // protocol 4

	// Push a class object, or module function, on the stack, via its module and name.
	opGLOBAL       = 'c'
	opSTACK_GLOBAL = 0x93 // protocol 4

	// Ways to build objects of classes pickle doesn't know about directly.
	opREDUCE    = 'R'
	opBUILD     = 'b'
	opNEWOBJ    = 0x81 // protocol 2
	opNEWOBJ_EX = 0x92 // protocol 4

	// Machine control.
	opPROTO = 0x80 // protocol 2
	opSTOP  = '.'

	// Framing support.
	opFRAME = 0x95 // protocol 4

	// Ways to deal with persistent IDs.
	opPERSID    = 'P'
	opBINPERSID = 'Q'
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

func (u *unpickler) step(op byte) error {
	switch op {
	case opPROTO:
		_, err := u.read(1)
		return err
	case opFRAME:
		_, err := u.read(8)
		return err
	case opSTOP:
		return errStop
	case opMARK:
		u.marks = append(u.marks, len(u.stack))
	case opPOP:
		_, err := u.pop()
		return err
	case opPOP_MARK:
		_, err := u.popMark()
		return err
	case opDUP:
		v, err := u.top()
		if err != nil {
			return err
		}
		u.push(v)
	case opNONE:
		u.push(nil)
	case opNEWTRUE:
		u.push(true)
	case opNEWFALSE:
		u.push(false)
	case opBININT:
		v, err := u.readUint(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(uint32(v))))
	case opBININT1:
		v, err := u.readUint(1)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opBININT2:
		v, err := u.readUint(2)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case opLONG1, opLONG4:
		size := 1
		if op == opLONG4 {
			size = 4
		}
		n, err := u.readUint(size)
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		v, err := decodeLong(b)
		if err != nil {
			return fmt.Errorf("corrupt pickle at offset %d: %w", u.pos, err)
		}
		u.push(v)
	case opBINFLOAT:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opBINUNICODE, opSHORT_BINUNICODE, opBINUNICODE8, opBINSTRING, opSHORT_BINSTRING:
		b, err := u.readSized(op)
		if err != nil {
			return err
		}
		u.push(string(b))
	case opBINBYTES, opSHORT_BINBYTES, opBINBYTES8, opBYTEARRAY8:
		b, err := u.readSized(op)
		if err != nil {
			return err
		}
		u.push(b)
	case opEMPTY_TUPLE:
		u.push(pyTuple{})
	case opTUPLE:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opTUPLE1, opTUPLE2, opTUPLE3:
		items, err := u.popN(int(op-opTUPLE1) + 1)
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opEMPTY_LIST:
		u.push(&pyList{})
	case opLIST:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opEMPTY_SET:
		u.push(&pyList{})
	case opFROZENSET:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pyList{items: items})
	case opAPPEND:
		v, err := u.pop()
		if err != nil {
			return err
		}
		l, err := u.top()
		if err != nil {
			return err
		}
		return appendItems(l, []any{v}, u.pos)
	case opAPPENDS, opADDITEMS:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		l, err := u.top()
		if err != nil {
			return err
		}
		return appendItems(l, items, u.pos)
	case opEMPTY_DICT:
		u.push(&pyDict{})
	case opDICT:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := &pyDict{}
		if err := setItems(d, items, u.pos); err != nil {
			return err
		}
		u.push(d)
	case opSETITEM:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		d, err := u.top()
		if err != nil {
			return err
		}
		return setItems(d, items, u.pos)
	case opSETITEMS:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d, err := u.top()
		if err != nil {
			return err
		}
		return setItems(d, items, u.pos)
	case opGLOBAL:
		mod, err := u.readLine()
		if err != nil {
			return err
		}
		name, err := u.readLine()
		if err != nil {
			return err
		}
		u.push(pyGlobal{mod, name})
	case opSTACK_GLOBAL:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		mod, ok1 := items[0].(string)
		name, ok2 := items[1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("corrupt pickle: STACK_GLOBAL needs two strings at offset %d", u.pos)
		}
		u.push(pyGlobal{mod, name})
	case opREDUCE, opNEWOBJ:
		items, err := u.popN(2)
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
	case opNEWOBJ_EX:
		items, err := u.popN(3)
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
	case opBUILD: // the state only sets attributes, which nothing here needs
		if _, err := u.pop(); err != nil {
			return err
		}
		_, err := u.top()
		return err
	case opBINPERSID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		v, err := u.persist(pid)
		if err != nil {
			return err
		}
		u.push(v)
	case opPERSID:
		s, err := u.readLine()
		if err != nil {
			return err
		}
		v, err := u.persist(s)
		if err != nil {
			return err
		}
		u.push(v)
	case opBINPUT, opLONG_BINPUT:
		k, err := u.readUint(map[byte]int{opBINPUT: 1, opLONG_BINPUT: 4}[op])
		if err != nil {
			return err
		}
		return u.memoPut(k)
	case opMEMOIZE:
		return u.memoPut(uint64(len(u.memo)))
	case opBINGET, opLONG_BINGET:
		k, err := u.readUint(map[byte]int{opBINGET: 1, opLONG_BINGET: 4}[op])
		if err != nil {
			return err
		}
		return u.memoGet(k)
	case opPUT, opGET:
		s, err := u.readLine()
		if err != nil {
			return err
		}
		k, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("corrupt pickle: memo key %q at offset %d", s, u.pos)
		}
		if op == opPUT {
			return u.memoPut(k)
		}
		return u.memoGet(k)
	default:
		return fmt.Errorf("unsupported pickle opcode 0x%02x at offset %d", op, u.pos-1)
	}
	return nil
}

// readSized reads the length prefix of a string or bytes opcode and then the payload.
func (u *unpickler) readSized(op byte) ([]byte, error) {
	size := 4
	switch op {
	case opSHORT_BINUNICODE, opSHORT_BINBYTES, opSHORT_BINSTRING:
		size = 1
	case opBINUNICODE8, opBINBYTES8, opBYTEARRAY8:
		size = 8
	}
	n, err := u.readUint(size)
	if err != nil {
		return nil, err
	}
	return u.read(n)
}
