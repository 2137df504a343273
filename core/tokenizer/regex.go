package tokenizer

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is a small backtracking matcher for the part of Oniguruma's syntax (HF tokenizers
// compiles tokenizer.json patterns with Oniguruma, Ruby syntax, no options) that tokenizer.json
// Split and Replace patterns use. Go's regexp cannot serve: it has no lookahead, and its \s and
// \d are ASCII. Matching is leftmost-first with Perl/Oniguruma priorities (greedy, lazy,
// alternatives in order), which a backtracking search gives exactly.
//
// Supported: literals; . (any character but \n); ^ $ (line anchors, as in Ruby) \A \z;
// (...) (?:...) (?i:...) (?-i:...) (?=...) (?!...); alternation; the quantifiers * + ? {n} {n,}
// {,m} {n,m} and their lazy forms; classes [...] [^...] with ranges and the escapes below; \s \S
// \d \D (Unicode, as Oniguruma's: White_Space and Nd), \p{X} \P{X} \p{^X} for general categories
// (L, Lu, N, Nd, P, …) and scripts (Han, Latin, …); \t \n \r \f \v \a \e \xHH \x{H…} \uHHHH and
// escaped punctuation. Inside case-insensitive groups, literals must be ASCII and match their
// simple case-fold orbit (so (?i:s) matches s, S and ſ, as in Oniguruma); classes there may hold
// no cased character; literals that could be a multi-character fold (ss, st, ff, fi, fl: ß matches
// (?i:ss) in Oniguruma) and repeated case-insensitive literals are refused.
//
// Anything else (lookbehind, backreferences, atomic groups, possessive quantifiers, \w \b \h,
// POSIX brackets, nested classes, inline option switches, multi-character case folds, …) is
// refused when the pattern is compiled, with an error that names the construct: the tokenizer
// never runs a pattern whose meaning could differ from Oniguruma's.
//
// Text that is not valid UTF-8 (Go strings may hold any bytes; HF only ever sees valid text): each
// invalid byte is one character that belongs to no category and equals no literal, like an
// unassigned code point — it matches \S, \D, \P{…}, negated classes and ., nothing else.

// invalidRune stands for one byte that is not part of a valid UTF-8 sequence.
const invalidRune rune = -1

// decodeAt returns the character at s[i] (i < len(s)) and its width.
func decodeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n <= 1 {
		return invalidRune, 1
	}
	return r, n
}

// charLen is the width of the character at s[i], 1 at the end of s (as the onig crate's
// iterator advances after an empty match).
func charLen(s string, i int) int {
	if i >= len(s) {
		return 1
	}
	_, n := decodeAt(s, i)
	return n
}

// ---- syntax tree ----

type reKind uint8

const (
	reLit    reKind = iota // one character (fold: its case-fold orbit)
	reClass                // a character class
	reAny                  // . : any character but \n
	reConcat               // subs in order
	reAlt                  // subs, first that matches wins
	reRepeat               // subs[0] min..max times (max < 0: unbounded)
	reLook                 // lookahead on subs[0]; neg for (?!)
	reAssert               // an anchor
	reEmpty                // matches the empty string
)

const (
	assertBOL = iota // ^
	assertEOL        // $
	assertBOS        // \A
	assertEOS        // \z
)

type reNode struct {
	kind     reKind
	r        rune
	fold     bool
	cls      *charClass
	subs     []*reNode
	min, max int
	lazy     bool
	neg      bool
	assert   int
}

// nullable reports whether n can match the empty string.
func (n *reNode) nullable() bool {
	switch n.kind {
	case reEmpty, reLook, reAssert:
		return true
	case reConcat:
		for _, s := range n.subs {
			if !s.nullable() {
				return false
			}
		}
		return true
	case reAlt:
		for _, s := range n.subs {
			if s.nullable() {
				return true
			}
		}
		return false
	case reRepeat:
		return n.min == 0 || n.subs[0].nullable()
	}
	return false
}

// ---- character classes ----

// classItem is one member of a class: a range of characters, or a Unicode table (possibly
// negated: \S, \D, \P{…}).
type classItem struct {
	lo, hi rune
	table  *unicode.RangeTable
	space  bool // Unicode White_Space (Oniguruma's \s)
	neg    bool
}

func (it *classItem) has(r rune) bool {
	var in bool
	switch {
	case r == invalidRune:
		in = false
	case it.space:
		in = unicode.IsSpace(r)
	case it.table != nil:
		in = unicode.Is(it.table, r)
	default:
		in = r >= it.lo && r <= it.hi
	}
	return in != it.neg
}

type charClass struct {
	neg   bool
	items []classItem
	ascii [2]uint64 // membership of the characters below 128, negation applied
}

func (c *charClass) finish() *charClass {
	for r := rune(0); r < 128; r++ {
		if c.slowHas(r) {
			c.ascii[r>>6] |= 1 << (r & 63)
		}
	}
	return c
}

func (c *charClass) slowHas(r rune) bool {
	for i := range c.items {
		if c.items[i].has(r) {
			return !c.neg
		}
	}
	return c.neg
}

func (c *charClass) has(r rune) bool {
	if r >= 0 && r < 128 {
		return c.ascii[r>>6]&(1<<(r&63)) != 0
	}
	return c.slowHas(r)
}

// foldSafe reports whether case folding cannot change the class's membership: its members are
// White_Space, decimal digits and ranges without cased characters (inside (?i:…) anything else is
// refused, as Oniguruma would fold it).
func (c *charClass) foldSafe() bool {
	for _, it := range c.items {
		switch {
		case it.neg:
			return false
		case it.space:
		case it.table == unicode.Nd:
		case it.table != nil:
			return false
		case it.hi-it.lo > 0x10000:
			return false
		default:
			for r := it.lo; r <= it.hi; r++ {
				if unicode.SimpleFold(r) != r {
					return false
				}
			}
		}
	}
	return true
}

// ---- parser ----

type reParser struct {
	src     string
	pos     int
	fold    bool
	pattern string
}

// RegexError is a pattern the matcher does not implement or cannot parse.
type regexError struct {
	pattern string
	at      int
	msg     string
}

func (e *regexError) Error() string {
	return fmt.Sprintf("regex %q at offset %d: %s", e.pattern, e.at, e.msg)
}

func (p *reParser) errf(format string, a ...any) error {
	return &regexError{pattern: p.pattern, at: p.pos, msg: fmt.Sprintf(format, a...)}
}

func (p *reParser) more() bool { return p.pos < len(p.src) }

func (p *reParser) peek() rune {
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	return r
}

func (p *reParser) next() rune {
	r, n := utf8.DecodeRuneInString(p.src[p.pos:])
	p.pos += n
	return r
}

func (p *reParser) hasPrefix(s string) bool { return strings.HasPrefix(p.src[p.pos:], s) }

func parseRegex(pattern string) (*reNode, error) {
	if !utf8.ValidString(pattern) {
		return nil, &regexError{pattern: pattern, msg: "pattern is not valid UTF-8"}
	}
	p := &reParser{src: pattern, pattern: pattern}
	n, err := p.parseAlt()
	if err != nil {
		return nil, err
	}
	if p.more() {
		return nil, p.errf("unmatched )")
	}
	if err := checkFold(n, pattern); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *reParser) parseAlt() (*reNode, error) {
	var alts []*reNode
	for {
		c, err := p.parseConcat()
		if err != nil {
			return nil, err
		}
		alts = append(alts, c)
		if p.more() && p.peek() == '|' {
			p.pos++
			continue
		}
		break
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return &reNode{kind: reAlt, subs: alts}, nil
}

func (p *reParser) parseConcat() (*reNode, error) {
	var items []*reNode
	for p.more() {
		c := p.peek()
		if c == '|' || c == ')' {
			break
		}
		atom, err := p.parseAtom()
		if err != nil {
			return nil, err
		}
		atom, err = p.parseQuant(atom)
		if err != nil {
			return nil, err
		}
		items = append(items, atom)
	}
	switch len(items) {
	case 0:
		return &reNode{kind: reEmpty}, nil
	case 1:
		return items[0], nil
	}
	return &reNode{kind: reConcat, subs: items}, nil
}

// parseInterval reads {n}, {n,}, {,m} or {n,m} at p.pos; ok is false when the text there is not
// an interval (Oniguruma then reads { as a literal; this matcher refuses it).
func (p *reParser) parseInterval() (lo, hi int, ok bool) {
	s := p.src[p.pos:]
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return 0, 0, false
	}
	body := s[1:end]
	a, b, comma := strings.Cut(body, ",")
	num := func(x string) (int, bool) {
		if x == "" || len(x) > 6 {
			return 0, false
		}
		for _, c := range x {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		v, err := strconv.Atoi(x)
		return v, err == nil
	}
	switch {
	case !comma:
		v, ok := num(a)
		if !ok {
			return 0, 0, false
		}
		lo, hi = v, v
	case a == "":
		v, ok := num(b)
		if !ok {
			return 0, 0, false
		}
		lo, hi = 0, v
	case b == "":
		v, ok := num(a)
		if !ok {
			return 0, 0, false
		}
		lo, hi = v, -1
	default:
		v, ok1 := num(a)
		w, ok2 := num(b)
		if !ok1 || !ok2 {
			return 0, 0, false
		}
		lo, hi = v, w
	}
	p.pos += end + 1
	return lo, hi, true
}

func (p *reParser) parseQuant(atom *reNode) (*reNode, error) {
	if !p.more() {
		return atom, nil
	}
	var lo, hi int
	switch c := p.peek(); c {
	case '*':
		p.pos++
		lo, hi = 0, -1
	case '+':
		p.pos++
		lo, hi = 1, -1
	case '?':
		p.pos++
		lo, hi = 0, 1
	case '{':
		var ok bool
		if lo, hi, ok = p.parseInterval(); !ok {
			return atom, nil // a '{' that starts no interval is a literal, read by the next parseAtom
		}
		if hi >= 0 && hi < lo {
			return nil, p.errf("repetition interval {%d,%d} has max < min", lo, hi)
		}
		if lo == hi && p.more() && p.peek() == '?' {
			return nil, p.errf("{n}? (which Ruby syntax reads as (?:x{n})?) is not supported")
		}
	default:
		return atom, nil
	}
	lazy := false
	if p.more() {
		switch p.peek() {
		case '?':
			p.pos++
			lazy = true
		case '+':
			return nil, p.errf("possessive quantifiers are not supported")
		}
	}
	if p.more() {
		switch p.peek() {
		case '*', '+', '?', '{':
			return nil, p.errf("a quantifier applied to a quantifier is not supported")
		}
	}
	switch atom.kind {
	case reLook, reAssert, reEmpty:
		return nil, p.errf("a quantifier on an anchor, lookahead or empty group is not supported")
	}
	if (hi < 0 || hi > 1) && atom.nullable() {
		return nil, p.errf("a repeated group that can match the empty string is not supported")
	}
	if lo > 1000 || hi > 1000 {
		return nil, p.errf("repetition counts above 1000 are not supported")
	}
	return &reNode{kind: reRepeat, subs: []*reNode{atom}, min: lo, max: hi, lazy: lazy}, nil
}

func (p *reParser) parseAtom() (*reNode, error) {
	start := p.pos
	c := p.next()
	switch c {
	case '(':
		return p.parseGroup()
	case '[':
		cls, err := p.parseClass()
		if err != nil {
			return nil, err
		}
		if p.fold && !cls.foldSafe() {
			p.pos = start
			return nil, p.errf("a character class with cased characters inside (?i:…) is not supported")
		}
		return &reNode{kind: reClass, cls: cls}, nil
	case '.':
		return &reNode{kind: reAny}, nil
	case '^':
		return &reNode{kind: reAssert, assert: assertBOL}, nil
	case '$':
		return &reNode{kind: reAssert, assert: assertEOL}, nil
	case '*', '+', '?':
		p.pos = start
		return nil, p.errf("quantifier %q with nothing to repeat", c)
	case '{':
		p.pos = start
		if _, _, ok := p.parseInterval(); ok {
			p.pos = start
			return nil, p.errf("repetition interval with nothing to repeat")
		}
		p.pos = start + 1
		return p.lit('{')
	case '\\':
		return p.parseEscape()
	}
	return p.lit(c)
}

func (p *reParser) lit(r rune) (*reNode, error) {
	if p.fold && r >= utf8.RuneSelf {
		return nil, p.errf("non-ASCII literal %q inside (?i:…) is not supported", r)
	}
	return &reNode{kind: reLit, r: r, fold: p.fold && unicode.SimpleFold(r) != r}, nil
}

func (p *reParser) parseGroup() (*reNode, error) {
	saved := p.fold
	defer func() { p.fold = saved }()
	var look, neg bool
	switch {
	case p.hasPrefix("?:"):
		p.pos += 2
	case p.hasPrefix("?i:"):
		p.pos += 3
		p.fold = true
	case p.hasPrefix("?-i:"):
		p.pos += 4
		p.fold = false
	case p.hasPrefix("?="):
		p.pos += 2
		look = true
	case p.hasPrefix("?!"):
		p.pos += 2
		look, neg = true, true
	case p.hasPrefix("?"):
		return nil, p.errf("group syntax (%s… is not supported (only (, (?:, (?i:, (?-i:, (?=, (?!)", p.src[p.pos-1:min(len(p.src), p.pos+3)])
	}
	body, err := p.parseAlt()
	if err != nil {
		return nil, err
	}
	if !p.more() || p.peek() != ')' {
		return nil, p.errf("missing )")
	}
	p.pos++
	if look {
		return &reNode{kind: reLook, subs: []*reNode{body}, neg: neg}, nil
	}
	return body, nil
}

// multiFold holds the ASCII strings that are the full case fold of one character (ß and ẞ → ss,
// ﬅ and ﬆ → st, ﬀ → ff, ﬁ → fi, ﬂ → fl, ﬃ → ffi, ﬄ → ffl): Oniguruma lets (?i:ss) match ß, which
// this matcher does not implement, so case-insensitive literals that spell one are refused.
var multiFold = []string{"ss", "st", "ff", "fi", "fl"}

// checkFold walks the tree after parsing and refuses case-insensitive literals that could take
// part in a multi-character case fold: two adjacent ones that spell a multiFold pair, or a
// repeated one.
func checkFold(n *reNode, pattern string) error {
	bad := func(msg string) error { return &regexError{pattern: pattern, msg: msg} }
	switch n.kind {
	case reConcat:
		for i := 0; i+1 < len(n.subs); i++ {
			a, b := n.subs[i], n.subs[i+1]
			if a.kind == reLit && b.kind == reLit && (a.fold || b.fold) {
				pair := strings.ToLower(string([]rune{a.r, b.r}))
				for _, m := range multiFold {
					if pair == m {
						return bad(fmt.Sprintf("case-insensitive %q could match one character by multi-character case folding (as ß matches ss), which is not supported", pair))
					}
				}
			}
		}
	case reRepeat:
		if hasFoldLit(n.subs[0]) {
			return bad("a repeated case-insensitive literal is not supported")
		}
	}
	for _, s := range n.subs {
		if err := checkFold(s, pattern); err != nil {
			return err
		}
	}
	return nil
}

func hasFoldLit(n *reNode) bool {
	if n.kind == reLit {
		return n.fold
	}
	for _, s := range n.subs {
		if hasFoldLit(s) {
			return true
		}
	}
	return false
}

// categories are the general categories \p{…} accepts (Oniguruma also accepts long names and
// other properties; those are refused).
var categories = map[string]*unicode.RangeTable{
	"l": unicode.L, "lu": unicode.Lu, "ll": unicode.Ll, "lt": unicode.Lt, "lm": unicode.Lm, "lo": unicode.Lo,
	"m": unicode.M, "mn": unicode.Mn, "mc": unicode.Mc, "me": unicode.Me,
	"n": unicode.N, "nd": unicode.Nd, "nl": unicode.Nl, "no": unicode.No,
	"p": unicode.P, "pc": unicode.Pc, "pd": unicode.Pd, "ps": unicode.Ps, "pe": unicode.Pe, "pi": unicode.Pi,
	"pf": unicode.Pf, "po": unicode.Po,
	"s": unicode.S, "sm": unicode.Sm, "sc": unicode.Sc, "sk": unicode.Sk, "so": unicode.So,
	"z": unicode.Z, "zs": unicode.Zs, "zl": unicode.Zl, "zp": unicode.Zp,
	"cc": unicode.Cc, "cf": unicode.Cf, "co": unicode.Co,
}

func propertyTable(name string) *unicode.RangeTable {
	key := strings.ToLower(name)
	if t, ok := categories[key]; ok {
		return t
	}
	for sname, t := range unicode.Scripts {
		if strings.ToLower(sname) == key {
			return t
		}
	}
	return nil
}

// parseProperty reads {Name} or {^Name} after \p / \P.
func (p *reParser) parseProperty(neg bool) (classItem, error) {
	if !p.hasPrefix("{") {
		return classItem{}, p.errf(`\p must be followed by {Name}`)
	}
	end := strings.IndexByte(p.src[p.pos:], '}')
	if end < 0 {
		return classItem{}, p.errf(`unterminated \p{`)
	}
	name := p.src[p.pos+1 : p.pos+end]
	if strings.HasPrefix(name, "^") {
		neg = !neg
		name = name[1:]
	}
	t := propertyTable(name)
	if t == nil {
		return classItem{}, p.errf(`property \p{%s} is not supported (general categories such as L, Lu, N, Nd, P and script names only)`, name)
	}
	p.pos += end + 1
	return classItem{table: t, neg: neg}, nil
}

// parseEscapeItem reads an escape after '\' that stands for a set of characters or one character
// (shared by atoms and classes). isSet tells which.
func (p *reParser) parseEscapeItem(inClass bool) (item classItem, isSet bool, err error) {
	if !p.more() {
		return item, false, p.errf(`trailing \`)
	}
	at := p.pos
	c := p.next()
	one := func(r rune) (classItem, bool, error) { return classItem{lo: r, hi: r}, false, nil }
	switch c {
	case 's':
		return classItem{space: true}, true, nil
	case 'S':
		return classItem{space: true, neg: true}, true, nil
	case 'd':
		return classItem{table: unicode.Nd}, true, nil
	case 'D':
		return classItem{table: unicode.Nd, neg: true}, true, nil
	case 'p', 'P':
		it, err := p.parseProperty(c == 'P')
		return it, true, err
	case 't':
		return one('\t')
	case 'n':
		return one('\n')
	case 'r':
		return one('\r')
	case 'f':
		return one('\f')
	case 'v':
		return one('\v')
	case 'a':
		return one('\a')
	case 'e':
		return one(0x1b)
	case 'x':
		if p.hasPrefix("{") {
			end := strings.IndexByte(p.src[p.pos:], '}')
			if end < 0 {
				return item, false, p.errf(`unterminated \x{`)
			}
			v, err := strconv.ParseUint(p.src[p.pos+1:p.pos+end], 16, 32)
			if err != nil || v > unicode.MaxRune {
				return item, false, p.errf(`bad \x{…} escape`)
			}
			p.pos += end + 1
			return one(rune(v))
		}
		n := 0
		for n < 2 && p.pos+n < len(p.src) && isHex(p.src[p.pos+n]) {
			n++
		}
		if n == 0 {
			return item, false, p.errf(`\x without hex digits is not supported`)
		}
		v, _ := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 8)
		p.pos += n
		if v >= 0x80 {
			return item, false, p.errf(`\x%02X is a raw byte in Oniguruma's UTF-8 mode, not a character; use \x{%X} or \u%04X`, v, v, v)
		}
		return one(rune(v))
	case 'u':
		if p.pos+4 > len(p.src) {
			return item, false, p.errf(`\u needs four hex digits`)
		}
		for i := 0; i < 4; i++ {
			if !isHex(p.src[p.pos+i]) {
				return item, false, p.errf(`\u needs four hex digits`)
			}
		}
		v, _ := strconv.ParseUint(p.src[p.pos:p.pos+4], 16, 32)
		p.pos += 4
		if v >= 0xD800 && v <= 0xDFFF {
			return item, false, p.errf(`\u%04X is a surrogate`, v)
		}
		return one(rune(v))
	}
	if c < utf8.RuneSelf && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		p.pos = at
		return item, false, p.errf(`escape \%c is not supported`, c)
	}
	return one(c)
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

func (p *reParser) parseEscape() (*reNode, error) {
	if p.more() {
		switch p.peek() {
		case 'A':
			p.pos++
			return &reNode{kind: reAssert, assert: assertBOS}, nil
		case 'z':
			p.pos++
			return &reNode{kind: reAssert, assert: assertEOS}, nil
		}
	}
	it, isSet, err := p.parseEscapeItem(false)
	if err != nil {
		return nil, err
	}
	if isSet {
		if p.fold && !(&charClass{items: []classItem{it}}).foldSafe() {
			return nil, p.errf(`escape with cased characters inside (?i:…) is not supported`)
		}
		return &reNode{kind: reClass, cls: (&charClass{items: []classItem{it}}).finish()}, nil
	}
	return p.lit(it.lo)
}

func (p *reParser) parseClass() (*charClass, error) {
	cls := &charClass{}
	if p.more() && p.peek() == '^' {
		p.pos++
		cls.neg = true
	}
	first := true
	for {
		if !p.more() {
			return nil, p.errf("missing ]")
		}
		c := p.peek()
		if c == ']' && !first {
			p.pos++
			break
		}
		first = false
		if c == '[' {
			return nil, p.errf("nested classes and POSIX brackets ([:…:]) are not supported")
		}
		if p.hasPrefix("&&") {
			return nil, p.errf("class intersection && is not supported")
		}
		var lo classItem
		if c == '\\' {
			p.pos++
			it, isSet, err := p.parseEscapeItem(true)
			if err != nil {
				return nil, err
			}
			if isSet {
				if p.hasPrefix("-") && !p.hasPrefix("-]") {
					return nil, p.errf("a class range starting with a set escape is not supported")
				}
				cls.items = append(cls.items, it)
				continue
			}
			lo = it
		} else {
			p.next()
			lo = classItem{lo: c, hi: c}
		}
		// a range lo-hi?
		if p.hasPrefix("-") && !p.hasPrefix("-]") && p.pos+1 < len(p.src) {
			p.pos++
			var hi rune
			if p.peek() == '\\' {
				p.pos++
				it, isSet, err := p.parseEscapeItem(true)
				if err != nil {
					return nil, err
				}
				if isSet {
					return nil, p.errf("a class range ending in a set escape is not supported")
				}
				hi = it.lo
			} else if p.peek() == '[' {
				return nil, p.errf("nested classes are not supported")
			} else {
				hi = p.next()
			}
			if hi < lo.lo {
				return nil, p.errf("class range %q-%q is out of order", lo.lo, hi)
			}
			lo.hi = hi
		}
		cls.items = append(cls.items, lo)
	}
	return cls.finish(), nil
}

// ---- program ----

const (
	opRune uint8 = iota
	opFold
	opClass
	opAny
	opSplit // try x first, then y
	opJmp
	opMatch
	opLook
	opAssert
)

type reInst struct {
	op     uint8
	neg    bool
	assert uint8
	r      rune
	x, y   int32
	fold   []rune
	cls    *charClass
	look   *reProg
}

// reProg is a compiled pattern.
type reProg struct {
	insts   []reInst
	pattern string
}

// compileRegex parses and compiles an Oniguruma pattern, refusing what the matcher does not
// implement.
func compileRegex(pattern string) (*reProg, error) {
	n, err := parseRegex(pattern)
	if err != nil {
		return nil, err
	}
	return compileNode(n, pattern)
}

func compileNode(n *reNode, pattern string) (*reProg, error) {
	p := &reProg{pattern: pattern}
	if err := p.emit(n); err != nil {
		return nil, err
	}
	p.insts = append(p.insts, reInst{op: opMatch})
	return p, nil
}

const maxInsts = 200000

func (p *reProg) add(in reInst) int32 {
	p.insts = append(p.insts, in)
	return int32(len(p.insts) - 1)
}

func (p *reProg) emit(n *reNode) error {
	if len(p.insts) > maxInsts {
		return &regexError{pattern: p.pattern, msg: "pattern too large once repetitions are expanded"}
	}
	switch n.kind {
	case reEmpty:
	case reLit:
		if n.fold {
			orbit := []rune{n.r}
			for f := unicode.SimpleFold(n.r); f != n.r; f = unicode.SimpleFold(f) {
				orbit = append(orbit, f)
			}
			p.add(reInst{op: opFold, fold: orbit})
		} else {
			p.add(reInst{op: opRune, r: n.r})
		}
	case reClass:
		p.add(reInst{op: opClass, cls: n.cls})
	case reAny:
		p.add(reInst{op: opAny})
	case reAssert:
		p.add(reInst{op: opAssert, assert: uint8(n.assert)})
	case reLook:
		sub, err := compileNode(n.subs[0], p.pattern)
		if err != nil {
			return err
		}
		p.add(reInst{op: opLook, neg: n.neg, look: sub})
	case reConcat:
		for _, s := range n.subs {
			if err := p.emit(s); err != nil {
				return err
			}
		}
	case reAlt:
		var jumps []int32
		for i, s := range n.subs {
			if i == len(n.subs)-1 {
				if err := p.emit(s); err != nil {
					return err
				}
				break
			}
			split := p.add(reInst{op: opSplit})
			p.insts[split].x = split + 1
			if err := p.emit(s); err != nil {
				return err
			}
			jumps = append(jumps, p.add(reInst{op: opJmp}))
			p.insts[split].y = int32(len(p.insts))
		}
		for _, j := range jumps {
			p.insts[j].x = int32(len(p.insts))
		}
	case reRepeat:
		body := n.subs[0]
		for i := 0; i < n.min; i++ {
			if err := p.emit(body); err != nil {
				return err
			}
		}
		if n.max < 0 {
			loop := p.add(reInst{op: opSplit})
			if err := p.emit(body); err != nil {
				return err
			}
			p.add(reInst{op: opJmp, x: loop})
			p.setSplit(loop, loop+1, int32(len(p.insts)), n.lazy)
			return nil
		}
		var splits []int32
		for i := n.min; i < n.max; i++ {
			splits = append(splits, p.add(reInst{op: opSplit}))
			if err := p.emit(body); err != nil {
				return err
			}
		}
		end := int32(len(p.insts))
		for _, s := range splits {
			p.setSplit(s, s+1, end, n.lazy)
		}
	}
	return nil
}

// setSplit makes inst a split that prefers body (greedy) or skip (lazy).
func (p *reProg) setSplit(inst, body, skip int32, lazy bool) {
	if lazy {
		p.insts[inst].x, p.insts[inst].y = skip, body
	} else {
		p.insts[inst].x, p.insts[inst].y = body, skip
	}
}

type reThread struct{ pc, pos int }

// matchAt runs the program anchored at pos and returns the end of the match, or -1.
func (p *reProg) matchAt(s string, pos int) int {
	var stackBuf [32]reThread
	stack := stackBuf[:0]
	var visited map[reThread]struct{}
	steps := 0
	pc, i := 0, pos
	for {
		in := &p.insts[pc]
		ok := false
		switch in.op {
		case opRune:
			if i < len(s) {
				if r, n := decodeAt(s, i); r == in.r {
					pc, i, ok = pc+1, i+n, true
				}
			}
		case opFold:
			if i < len(s) {
				r, n := decodeAt(s, i)
				for _, f := range in.fold {
					if r == f {
						pc, i, ok = pc+1, i+n, true
						break
					}
				}
			}
		case opClass:
			if i < len(s) {
				if r, n := decodeAt(s, i); in.cls.has(r) {
					pc, i, ok = pc+1, i+n, true
				}
			}
		case opAny:
			if i < len(s) {
				if r, n := decodeAt(s, i); r != '\n' {
					pc, i, ok = pc+1, i+n, true
				}
			}
		case opSplit:
			// Without backreferences a state (instruction, position) explored once and left
			// is a failure; after many steps, remember split states so that no pattern can take
			// exponential time.
			if steps++; steps > 4096+16*len(s) {
				if visited == nil {
					visited = map[reThread]struct{}{}
				}
				st := reThread{pc, i}
				if _, seen := visited[st]; seen {
					break
				}
				visited[st] = struct{}{}
			}
			stack = append(stack, reThread{int(in.y), i})
			pc, ok = int(in.x), true
		case opJmp:
			pc, ok = int(in.x), true
		case opMatch:
			return i
		case opLook:
			if (in.look.matchAt(s, i) >= 0) != in.neg {
				pc, ok = pc+1, true
			}
		case opAssert:
			switch in.assert {
			case assertBOL:
				ok = i == 0 || s[i-1] == '\n'
			case assertEOL:
				ok = i == len(s) || s[i] == '\n'
			case assertBOS:
				ok = i == 0
			case assertEOS:
				ok = i == len(s)
			}
			if ok {
				pc++
			}
		}
		if ok {
			continue
		}
		if len(stack) == 0 {
			return -1
		}
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		pc, i = t.pc, t.pos
	}
}

// search finds the leftmost match starting at or after from.
func (p *reProg) search(s string, from int) (start, end int, ok bool) {
	for st := from; st <= len(s); st += charLen(s, st) {
		if e := p.matchAt(s, st); e >= 0 {
			return st, e, true
		}
	}
	return 0, 0, false
}

// findAll calls fn with every match of p in s, as the onig crate's find_iter gives them (the
// iterator HF tokenizers uses): each search starts where the previous match ended; after an empty
// match the next search starts one character further, and an empty match found right after a
// non-empty one is skipped.
func (p *reProg) findAll(s string, fn func(start, end int)) {
	lastEnd, skipNextEmpty := 0, false
	for lastEnd <= len(s) {
		st, e, ok := p.search(s, lastEnd)
		if !ok {
			return
		}
		lastEnd = e
		if e == st {
			lastEnd += charLen(s, lastEnd)
			if skipNextEmpty {
				skipNextEmpty = false
				continue
			}
		} else {
			skipNextEmpty = true
		}
		fn(st, e)
	}
}
