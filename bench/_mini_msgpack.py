"""A minimal pure-Python msgpack (packb / unpackb) for machines without the msgpack package:
bench/gpu_check.py installs it as the `msgpack` module when `import msgpack` fails, so the
simplescope package runs on a bare GPU machine that has only torch and transformers.

It covers what simplescope sends and receives: nil, bool, int, float, str, bin, arrays and maps
(no ext types, no timestamps). packb(obj, default=None, use_bin_type=True) and
unpackb(data, raw=False, strict_map_key=False) mirror the msgpack calls simplescope makes.
"""
import struct

__all__ = ["packb", "unpackb"]


def packb(obj, default=None, use_bin_type=True, **_):
    out = bytearray()
    _pack(obj, out, default)
    return bytes(out)


def _pack(o, out, default):
    if o is None:
        out.append(0xC0)
    elif o is True:
        out.append(0xC3)
    elif o is False:
        out.append(0xC2)
    elif isinstance(o, int):
        _pack_int(o, out)
    elif isinstance(o, float):
        out.append(0xCB)
        out += struct.pack(">d", o)
    elif isinstance(o, str):
        b = o.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 1 << 8:
            out += bytes((0xD9, n))
        elif n < 1 << 16:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += b
    elif isinstance(o, (bytes, bytearray, memoryview)):
        b = bytes(o)
        n = len(b)
        if n < 1 << 8:
            out += bytes((0xC4, n))
        elif n < 1 << 16:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += b
    elif isinstance(o, (list, tuple)):
        n = len(o)
        if n < 16:
            out.append(0x90 | n)
        elif n < 1 << 16:
            out += b"\xdc" + struct.pack(">H", n)
        else:
            out += b"\xdd" + struct.pack(">I", n)
        for x in o:
            _pack(x, out, default)
    elif isinstance(o, dict):
        n = len(o)
        if n < 16:
            out.append(0x80 | n)
        elif n < 1 << 16:
            out += b"\xde" + struct.pack(">H", n)
        else:
            out += b"\xdf" + struct.pack(">I", n)
        for k, v in o.items():
            _pack(k, out, default)
            _pack(v, out, default)
    elif default is not None:
        _pack(default(o), out, None)
    else:
        raise TypeError(f"cannot serialize {type(o).__name__}")


def _pack_int(i, out):
    if 0 <= i < 128:
        out.append(i)
    elif -32 <= i < 0:
        out.append(i & 0xFF)
    elif 0 <= i < 1 << 64:
        out += b"\xcf" + struct.pack(">Q", i)
    elif -(1 << 63) <= i < 0:
        out += b"\xd3" + struct.pack(">q", i)
    else:
        raise OverflowError(f"integer {i} out of msgpack range")


def unpackb(data, raw=False, strict_map_key=False, **_):
    buf = memoryview(bytes(data))
    obj, pos = _unpack(buf, 0)
    if pos != len(buf):
        raise ValueError(f"extra data after the msgpack object ({len(buf) - pos} bytes)")
    return obj


_FIXED = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
          0xCA: ">f", 0xCB: ">d"}


def _unpack(b, p):
    t = b[p]
    p += 1
    if t < 0x80:
        return t, p
    if t >= 0xE0:
        return t - 0x100, p
    if 0x80 <= t <= 0x8F:
        return _map(b, p, t & 0x0F)
    if 0x90 <= t <= 0x9F:
        return _array(b, p, t & 0x0F)
    if 0xA0 <= t <= 0xBF:
        n = t & 0x1F
        return str(b[p:p + n], "utf-8"), p + n
    if t == 0xC0:
        return None, p
    if t == 0xC2:
        return False, p
    if t == 0xC3:
        return True, p
    if t in _FIXED:
        fmt = _FIXED[t]
        n = struct.calcsize(fmt)
        return struct.unpack_from(fmt, b, p)[0], p + n
    if t in (0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB):
        fmt = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I", 0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}[t]
        n = struct.unpack_from(fmt, b, p)[0]
        p += struct.calcsize(fmt)
        chunk = b[p:p + n]
        return (str(chunk, "utf-8") if t >= 0xD9 else bytes(chunk)), p + n
    if t in (0xDC, 0xDD):
        fmt = ">H" if t == 0xDC else ">I"
        n = struct.unpack_from(fmt, b, p)[0]
        return _array(b, p + struct.calcsize(fmt), n)
    if t in (0xDE, 0xDF):
        fmt = ">H" if t == 0xDE else ">I"
        n = struct.unpack_from(fmt, b, p)[0]
        return _map(b, p + struct.calcsize(fmt), n)
    raise ValueError(f"msgpack type byte 0x{t:02x} not supported")


def _array(b, p, n):
    out = []
    for _ in range(n):
        x, p = _unpack(b, p)
        out.append(x)
    return out, p


def _map(b, p, n):
    out = {}
    for _ in range(n):
        k, p = _unpack(b, p)
        v, p = _unpack(b, p)
        out[k] = v
    return out, p
