#!/usr/bin/python3
"""FP8 (OCP 8-bit floating point, v1.0) written from the definition, with numpy only.

Formats (sign bit, exponent field E, mantissa field M):
  E4M3 ("fn"): bias 7, 3 mantissa bits; no infinities; S.1111.111 is NaN, so the top binade holds
               S.1111.000 .. S.1111.110 and the largest finite value is 1.75 * 2^8 = 448.
  E5M2:        bias 15, 2 mantissa bits, IEEE-like: E = 31 is infinity (M = 0) or NaN (M != 0);
               the largest finite value is 1.75 * 2^15 = 57344.
  Both: E = 0 holds subnormals M * 2^(1 - bias - mbits) and the signed zeros.

Encoding a float32 x (round to nearest, ties to the even code, i.e. the one whose mantissa LSB is
0, which for non-negative codes of one sign is the code's own LSB since codes grow with value):
  the candidates are every finite non-negative code plus one "virtual" code just past the largest
  (its value is the largest plus one top-binade step: 480 for E4M3, 65536 for E5M2). |x| goes to the
  nearest candidate (a tie to the even one); the virtual code or anything beyond it is an overflow.
  So for E4M3, |x| in (448, 464] rounds to 448 (464 is the tie, 448 = 0x7e is even) and above 464
  overflows; for E5M2 the tie 61440 goes to the virtual (even) code, i.e. it overflows.
  Overflow and +-inf: saturate -> the largest finite value of x's sign; plain cast -> NaN (E4M3)
  or +-inf (E5M2). NaN -> the format's NaN with x's sign: S.1111.111 (E4M3), S.11111.10 (E5M2,
  the quiet NaN that a float16 NaN truncates to). The sign of x is always kept (-0.0 -> 0x80, a
  negative value that rounds to zero -> 0x80).
int8 (the symmetric quantiser's): round half to even, clamp to [-127, 127], NaN -> 0.

Used by tests/fp8_test.cpp (`fp8_reference.py --cases FILE`) to check foley's C++ codec
(src/core/dtype.cpp), and by scripts/tiny_models/dit.py to write fp8 safetensors DiTs.
"""

import argparse
import struct
import sys

import numpy as np


class Format:
    def __init__(self, name, ebits, mbits, bias, has_inf):
        self.name, self.ebits, self.mbits, self.bias, self.has_inf = name, ebits, mbits, bias, has_inf
        codes = np.arange(128, dtype=np.int64)
        self.positive = decode_codes(self, codes.astype(np.uint8))  # value of codes 0..127
        finite = np.isfinite(self.positive)
        self.max_code = int(codes[finite].max())
        self.max = float(self.positive[self.max_code])
        step = self.max - float(self.positive[self.max_code - 1])  # one top-binade step
        # The candidates for |x|: finite codes 0..max_code, then the virtual overflow code.
        self.cand_values = np.append(self.positive[: self.max_code + 1], self.max + step)
        self.cand_codes = np.arange(self.max_code + 2, dtype=np.int64)
        self.nan = 0x7F if not has_inf else 0x7E
        self.overflow = 0x7F if not has_inf else 0x7C  # plain cast: NaN (E4M3) or inf (E5M2)


def decode_codes(fmt, codes):
    """float64 values of uint8 codes."""
    c = np.asarray(codes, dtype=np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> fmt.mbits) & ((1 << fmt.ebits) - 1)
    m = c & ((1 << fmt.mbits) - 1)
    top = (1 << fmt.ebits) - 1
    normal = (1.0 + m / float(1 << fmt.mbits)) * np.exp2((e - fmt.bias).astype(np.float64))
    sub = m * 2.0 ** (1 - fmt.bias - fmt.mbits)
    v = np.where(e == 0, sub, normal)
    if fmt.has_inf:
        v = np.where(e == top, np.where(m == 0, np.inf, np.nan), v)
    else:
        v = np.where((e == top) & (m == (1 << fmt.mbits) - 1), np.nan, v)
    return sign * v


E4M3 = Format("e4m3", 4, 3, 7, has_inf=False)
E5M2 = Format("e5m2", 5, 2, 15, has_inf=True)
FORMATS = {"e4m3": E4M3, "e5m2": E5M2}


def decode(codes, fmt):
    """float32 values of uint8 codes (every fp8 value is exact in float32)."""
    return decode_codes(fmt, codes).astype(np.float32)


def encode(x, fmt, saturate):
    """uint8 codes of float32 values `x` (any shape)."""
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    x = x.reshape(-1)
    neg = np.signbit(x)
    a = np.abs(x.astype(np.float64))  # float32 -> float64 is exact; so are the midpoints below
    out = np.zeros(x.shape, dtype=np.int64)
    nan = np.isnan(a)
    a_safe = np.where(nan | np.isinf(a), 0.0, a)
    v = fmt.cand_values
    # hi: first candidate >= a (clipped to the virtual one); lo: the one below.
    hi = np.minimum(np.searchsorted(v, a_safe, side="left"), len(v) - 1)
    lo = np.maximum(hi - 1, 0)
    d_lo = a_safe - v[lo]
    d_hi = v[hi] - a_safe
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (fmt.cand_codes[hi] % 2 == 0))
    pick_hi |= hi == lo
    code = np.where(pick_hi, fmt.cand_codes[hi], fmt.cand_codes[lo])
    over = (code > fmt.max_code) | (a_safe > v[-1]) | np.isinf(a)
    code = np.where(over, fmt.max_code if saturate else fmt.overflow, code)
    code = np.where(nan, fmt.nan, code)
    out = code | np.where(neg, 0x80, 0)
    return out.astype(np.uint8).reshape(shape)


def round_trip(x, fmt):
    """float32 values of x after a plain cast to fmt: what an fp8 file of x decodes to."""
    return decode(encode(x, fmt, saturate=False), fmt)


def to_i8(x):
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    r = np.clip(np.rint(np.where(np.isnan(x), 0.0, x)), -127, 127)
    return r.astype(np.int8)


# ---- the cases of tests/fp8_test.cpp ------------------------------------------------------------

def f32_bits(v):
    return np.asarray(v, dtype=np.float32).view(np.uint32)


def next_up_down(v):
    """v's float32 neighbours on both sides (nextafter towards +-inf)."""
    v = np.asarray(v, dtype=np.float32)
    return np.concatenate([np.nextafter(v, np.float32(np.inf)), np.nextafter(v, np.float32(-np.inf))])


def cases(seed=12):
    rng = np.random.default_rng(seed)
    parts = []
    # Random across the exponent range: from below the smallest E5M2 subnormal (2^-17) and float32
    # subnormals up to far beyond 57344, both signs, all 23 mantissa bits random.
    n = 3000
    exps = rng.integers(-140, 40, size=n)
    mant = rng.integers(0, 1 << 23, size=n)
    vals = (1.0 + mant / float(1 << 23)) * np.exp2(exps.astype(np.float64))
    vals = np.where(rng.integers(0, 2, size=n) == 1, -vals, vals)
    parts.append(vals.astype(np.float32))
    # The interesting range more densely: |x| within the formats' ranges.
    m = 1000
    parts.append((rng.standard_normal(m) * np.exp2(rng.integers(-18, 17, size=m))).astype(np.float32))
    for fmt in (E4M3, E5M2):
        v = fmt.cand_values  # finite non-negative values and the virtual overflow value
        mids = ((v[:-1] + v[1:]) / 2).astype(np.float32)  # exact: ties between neighbours
        assert np.all(mids.astype(np.float64) == (v[:-1] + v[1:]) / 2)
        for s in (1.0, -1.0):
            parts += [s * v.astype(np.float32), s * mids, next_up_down(s * mids),
                      next_up_down(s * v.astype(np.float32)[1:])]
        # Below the smallest subnormal: half of it (a tie with zero) and around it.
        tiny = np.float32(v[1] / 2)
        parts += [np.array([tiny, -tiny], np.float32), next_up_down([tiny, -tiny])]
    # Every fp8 value, decoded (so every code is hit by encode too), and the specials.
    for fmt in (E4M3, E5M2):
        parts.append(decode(np.arange(256, dtype=np.uint8), fmt))
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 448.0, 464.0, 480.0, 57344.0,
                61440.0, 65536.0, 1e30, -1e30, 3.4028235e38, -3.4028235e38, 1e-45, -1e-45,
                1.1754944e-38, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 128.0, -127.5,
                -128.5, 1000.0]
    parts.append(np.array(specials, dtype=np.float32))
    x = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1) for p in parts])
    # -nan: make sure one NaN has the sign bit set whatever numpy does with -np.nan.
    x = np.append(x, np.array([0xFFC00000, 0x7FC00001], dtype=np.uint32).view(np.float32))
    return x


def write_cases(path):
    """Binary file read by tests/fp8_test.cpp, all little-endian:
         u32 n; n x f32 inputs;
         n x u8 each: e4m3 saturate, e4m3 plain cast, e5m2 saturate, e5m2 plain cast; n x i8 int8;
         256 x f32 e4m3 values of codes 0..255; 256 x f32 e5m2 values."""
    x = cases()
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(x)))
        f.write(x.astype("<f4").tobytes())
        for fmt in (E4M3, E5M2):
            for sat in (True, False):
                f.write(encode(x, fmt, sat).tobytes())
        f.write(to_i8(x).tobytes())
        for fmt in (E4M3, E5M2):
            f.write(decode(np.arange(256, dtype=np.uint8), fmt).astype("<f4").tobytes())


def self_check():
    """A few values worked out by hand from the definition."""
    assert E4M3.max == 448.0 and E5M2.max == 57344.0
    assert E4M3.positive[1] == 2.0 ** -9 and E5M2.positive[1] == 2.0 ** -16
    assert encode([1.0], E4M3, True)[0] == 0x38 and encode([1.0], E5M2, True)[0] == 0x3C
    assert encode([464.0, 465.0], E4M3, False).tolist() == [0x7E, 0x7F]
    assert encode([61439.0, 61440.0], E5M2, False).tolist() == [0x7B, 0x7C]
    assert encode([61440.0, np.inf, -np.inf], E5M2, True).tolist() == [0x7B, 0x7B, 0xFB]
    assert encode([-0.0, -1e-30, np.nan], E4M3, True).tolist() == [0x80, 0x80, 0x7F]
    # 1 + 1/16 is halfway between 1 (0x38, even) and 1.125 (0x39): to 0x38; 1 + 3/16 to 0x3A.
    assert encode([1.0625, 1.1875], E4M3, True).tolist() == [0x38, 0x3A]
    assert np.isnan(decode([0x7F, 0xFF], E4M3)).all() and decode([0x7E], E4M3)[0] == 448.0
    assert decode([0x7C, 0xFC], E5M2).tolist() == [np.inf, -np.inf]
    assert to_i8([0.5, 1.5, -2.5, 300.0, np.nan]).tolist() == [0, 2, -2, 127, 0]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", metavar="FILE", help="write the test cases of tests/fp8_test.cpp")
    a = ap.parse_args(argv[1:])
    self_check()
    if a.cases:
        write_cases(a.cases)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
