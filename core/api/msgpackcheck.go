package api

import (
	"encoding/binary"
	"fmt"
)

// checkLengths walks one msgpack value and refuses a request whose declared array, map, string,
// binary or extension lengths exceed the bytes that follow. msgpack v5.4.1 allocates a declared
// array length up front (its allocation limit is never applied: `flags&disableAllocLimitFlag != 1`
// is always true), so a 12-byte request declaring 10^9 ints would allocate 8 GB and take the
// process down; every element needs at least one byte, so this bound keeps allocations in
// proportion to the request.
func checkLengths(b []byte) error {
	pending := 1 // values still to read
	i := 0
	need := func(n uint64) error {
		if n > uint64(len(b)-i) {
			return fmt.Errorf("msgpack: length %d at byte %d exceeds the %d bytes left", n, i, len(b)-i)
		}
		return nil
	}
	uintN := func(size int) (uint64, error) {
		if err := need(uint64(size)); err != nil {
			return 0, err
		}
		var v uint64
		switch size {
		case 1:
			v = uint64(b[i])
		case 2:
			v = uint64(binary.BigEndian.Uint16(b[i:]))
		case 4:
			v = uint64(binary.BigEndian.Uint32(b[i:]))
		}
		i += size
		return v, nil
	}
	for pending > 0 {
		if i >= len(b) {
			return fmt.Errorf("msgpack: truncated after %d bytes", len(b))
		}
		c := b[i]
		i++
		pending--
		var items, skip uint64 // container items to add; payload bytes to skip
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c&0xf0 == 0x80:
			items = 2 * uint64(c&0x0f)
		case c&0xf0 == 0x90:
			items = uint64(c & 0x0f)
		case c&0xe0 == 0xa0:
			skip = uint64(c & 0x1f)
		case c == 0xc4 || c == 0xd9:
			skip, err = uintN(1)
		case c == 0xc5 || c == 0xda:
			skip, err = uintN(2)
		case c == 0xc6 || c == 0xdb:
			skip, err = uintN(4)
		case c == 0xc7 || c == 0xc8 || c == 0xc9:
			skip, err = uintN(1 << (c - 0xc7))
			skip++ // the extension type byte
		case c == 0xca, c == 0xcb:
			skip = 4 << (c - 0xca)
		case c >= 0xcc && c <= 0xcf:
			skip = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3:
			skip = 1 << (c - 0xd0)
		case c >= 0xd4 && c <= 0xd8:
			skip = 1 + 1<<(c-0xd4)
		case c == 0xdc:
			items, err = uintN(2)
		case c == 0xdd:
			items, err = uintN(4)
		case c == 0xde:
			items, err = uintN(2)
			items *= 2
		case c == 0xdf:
			items, err = uintN(4)
			items *= 2
		default:
			return fmt.Errorf("msgpack: invalid byte 0x%02x at byte %d", c, i-1)
		}
		if err != nil {
			return err
		}
		if err := need(skip); err != nil {
			return err
		}
		i += int(skip)
		if err := need(uint64(pending) + items); err != nil {
			return err
		}
		pending += int(items)
	}
	return nil
}
