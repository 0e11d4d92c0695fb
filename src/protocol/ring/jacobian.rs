//! Variable-time secp256k1 point arithmetic on k256's field elements: the inner loop of [`super::fast`].
//!
//! The fixed-base verifier of §2.5 spends almost all its time adding table entries (affine points) into an
//! accumulator. k256's [`k256::ProjectivePoint`] uses complete, constant-time addition formulas on homogeneous
//! coordinates (every addition costs the same whatever its inputs, and the affine conversion uses a constant-time
//! inversion). Ring verification only handles public data (the signature, the ring keys, the message), so none
//! of that protection is needed here: this module adds an affine point to a Jacobian accumulator with the classic
//! incomplete formulas (8M + 3S), branching on the special cases, and converts to affine with one variable-time
//! inversion for several points (Montgomery's trick). **Nothing here is constant-time: never use it on secrets**
//! (signing keeps using k256).
//!
//! Representation: a [`Jacobian`] point `(X, Y, Z)` stands for the affine point `(X/Z², Y/Z³)`; the point at
//! infinity is an explicit flag (its coordinates are then meaningless). An [`Affine`] point is never the
//! identity. A sum is gathered first as [`Terms`] (copies of the table entries, negated as needed), then added
//! up: the copies are independent memory reads the CPU overlaps, where reading each entry in the addition
//! would put a cache miss (the tables do not fit in L2) on the critical path of every addition (measured: the
//! copies are faster).
//!
//! k256's field elements are lazily reduced: each carries a *magnitude* (how many multiples of p its limbs may
//! hold); `mul`/`square` need inputs of magnitude ≤ 8 and return magnitude 1, `a + b` adds magnitudes,
//! `negate(m)` needs `m` ≥ the actual magnitude and returns `m + 1`. The bounds the accumulator keeps between
//! operations are the `*_MAG` constants below; every intermediate magnitude is written next to its computation.
//! Debug builds swap in k256's checked field implementation, which panics on any violation, so the unit tests
//! (run in debug) check these bounds.

use k256::elliptic_curve::hazmat::FieldArithmetic;
use k256::elliptic_curve::point::AffineCoordinates as _;
use k256::{AffinePoint, Secp256k1};

/// secp256k1's base field element (k256's lazily reduced 5×52-bit representation).
pub(super) type Fe = <Secp256k1 as FieldArithmetic>::FieldElement;

/// The 33-byte encoding k256 gives the identity (`AffinePoint::IDENTITY.to_bytes()`: the one-byte SEC1 identity
/// `0x00`, zero-padded), which is what the reference hashes when L or R is the identity (§2.5).
pub(super) const IDENTITY_BYTES: [u8; 33] = [0u8; 33];

/// Magnitude bound of an accumulator's X between operations.
const X_MAG: u32 = 5;
/// Magnitude bound of an accumulator's Y between operations.
const Y_MAG: u32 = 3;
/// Magnitude bound of an accumulator's Z between operations (Z is always a product, magnitude 1).
const Z_MAG: u32 = 1;
// `double` multiplies the coordinates as they are.
const _: () = assert!(X_MAG <= 8 && Y_MAG <= 8 && Z_MAG <= 8);

/// A point other than the identity in affine coordinates: x normalized (magnitude 1, fully reduced), y of
/// magnitude ≤ 2 (normalized, except in a [`Terms`] entry that was negated).
#[derive(Clone, Copy, Debug)]
pub(super) struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
    /// Filler of the unused slots of [`Terms`] (not a curve point; never read).
    const UNUSED: Self = Self {
        x: Fe::ZERO,
        y: Fe::ZERO,
    };

    /// The coordinates of a k256 point; `None` for the identity (which has none).
    pub(super) fn from_k256(point: &AffinePoint) -> Option<Self> {
        if *point == AffinePoint::IDENTITY {
            return None;
        }
        // A finite k256 point's coordinates are canonical, so parsing them back cannot fail.
        let x = Option::<Fe>::from(Fe::from_bytes(&point.x()))?;
        let y = Option::<Fe>::from(Fe::from_bytes(&point.y()))?;
        Some(Self { x, y })
    }
}

/// Capacity of [`Terms`]: L and R are each the sum of two products of at most 33 table entries.
pub(super) const MAX_TERMS: usize = 66;

/// The affine points (table entries, possibly negated) whose sum is wanted, copied out of their tables (see the
/// module docs).
pub(super) struct Terms {
    points: [Affine; MAX_TERMS],
    len: usize,
}

impl Terms {
    pub(super) fn new() -> Self {
        Self {
            points: [Affine::UNUSED; MAX_TERMS],
            len: 0,
        }
    }

    /// Appends `p`, or `−p` with `negate` (`p` normalized: a table entry or a k256 point); `None` when full.
    #[inline]
    pub(super) fn push(&mut self, p: &Affine, negate: bool) -> Option<()> {
        let slot = self.points.get_mut(self.len)?;
        *slot = if negate {
            Affine {
                x: p.x,
                y: p.y.negate(1), // magnitude 2
            }
        } else {
            *p
        };
        self.len += 1;
        Some(())
    }

    fn as_slice(&self) -> &[Affine] {
        &self.points[..self.len]
    }

    /// The sum of the terms, added one by one into a Jacobian accumulator.
    pub(super) fn sum(&self) -> Jacobian {
        let mut sum = Jacobian::INFINITY;
        for p in self.as_slice() {
            sum.add_affine(p);
        }
        sum
    }
}

/// A point in Jacobian coordinates, or the identity.
#[derive(Clone, Copy, Debug)]
pub(super) struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
    infinity: bool,
}

impl Jacobian {
    /// The identity (the point at infinity).
    pub(super) const INFINITY: Self = Self {
        x: Fe::ZERO,
        y: Fe::ZERO,
        z: Fe::ZERO,
        infinity: true,
    };

    /// Whether this is the identity.
    #[cfg(test)]
    pub(super) fn is_infinity(&self) -> bool {
        self.infinity
    }

    /// `self += p`.
    ///
    /// With `U2 = x2·Z1²`, `S2 = y2·Z1³` (p scaled to the accumulator's Z), `H = U2 − X1` and `R = S2 − Y1`:
    /// `X3 = R² − H³ − 2·X1·H²`, `Y3 = R·(X1·H² − X3) − Y1·H³`, `Z3 = Z1·H` (8M + 3S). These formulas divide by
    /// H implicitly: H = 0 (same x, p is ±self) and an accumulator at infinity go to [`Self::add_special`].
    ///
    /// Multiplications are written `a * &b`: k256's `Mul` by value is `#[inline(always)]`, while its `mul` and
    /// `square` methods are out-of-line calls (these 11 multiplications are most of the verifier's time), and
    /// `Mul` by value carries no inline attribute.
    #[inline]
    #[allow(clippy::op_ref)] // `a * &b` on purpose, see above
    pub(super) fn add_affine(&mut self, p: &Affine) {
        if self.infinity {
            return self.add_special(p);
        }
        let z1z1 = self.z * &self.z; // 1
        let h = p.x * &z1z1 + self.x.negate(X_MAG); // U2 − X1: 1 + (X_MAG + 1) = 7
        if bool::from(h.normalizes_to_zero()) {
            return self.add_special(p);
        }
        let s2 = p.y * &(self.z * &z1z1); // 1
        let r = s2 + self.y.negate(Y_MAG); // 1 + (Y_MAG + 1) = 5
        let hh = h * &h; // 1
        let hhh = h * &hh; // 1
        let v = self.x * &hh; // 1
        let x3 = r * &r + (hhh + v + v).negate(3); // 1 + 4 = 5 = X_MAG
        let y3 = r * &(v + x3.negate(5)) + (self.y * &hhh).negate(1); // 1 + 2 = 3 = Y_MAG
        let z3 = self.z * &h; // 1 = Z_MAG
        *self = Self {
            x: x3,
            y: y3,
            z: z3,
            infinity: false,
        };
    }

    /// `self += p` in the cases [`Self::add_affine`] leaves: `self` at infinity (the sum is `p`), or H = 0, i.e.
    /// `p = ±self`: R = 0 means the same point (double), otherwise the opposite one (the sum is the identity).
    fn add_special(&mut self, p: &Affine) {
        if self.infinity {
            *self = Self {
                x: p.x,
                y: p.y,
                z: Fe::ONE,
                infinity: false,
            };
            return;
        }
        let z1z1 = self.z.square();
        let s2 = p.y.mul(&self.z.mul(&z1z1));
        let r = s2 + self.y.negate(Y_MAG); // 5
        *self = if bool::from(r.normalizes_to_zero()) {
            self.double()
        } else {
            Self::INFINITY
        };
    }

    /// `2·self`: with `S = 4·X·Y²` and `M = 3·X²` (the curve's a = 0), `X3 = M² − 2S`, `Y3 = M·(S − X3) − 8·Y⁴`,
    /// `Z3 = 2·Y·Z` (3M + 4S). Only reached when an addition meets its own point (rare), so the results are
    /// simply weakly normalized back to magnitude 1. secp256k1 has no point of order 2 (its order is an odd
    /// prime), so Y ≠ 0 and Z3 ≠ 0 for a finite point.
    pub(super) fn double(&self) -> Self {
        if self.infinity {
            return Self::INFINITY;
        }
        let yy = self.y.square(); // 1
        let s = self.x.mul(&yy).mul_single(4); // 4
        let m = self.x.square().mul_single(3); // 3
        let x3 = (m.square() + s.double().negate(8)).normalize_weak(); // 1 + 9 → 1
        // S − X3: 4 + 2 = 6; then 1 + 9 → 1.
        let y3 = (m.mul(&(s + x3.negate(1))) + yy.square().mul_single(8).negate(8)).normalize_weak();
        let z3 = self.y.mul(&self.z).double().normalize_weak(); // 2 → 1
        Self {
            x: x3,
            y: y3,
            z: z3,
            infinity: false,
        }
    }
}

/// The 33-byte SEC1 compressed encodings of `points` (`0x02`/`0x03` by the parity of y, then x big-endian;
/// [`IDENTITY_BYTES`] for the identity), exactly what k256's `to_affine().to_bytes()` gives, with one
/// variable-time inversion for all of them (Montgomery's trick: invert the product of the Z's, then peel each
/// inverse off with two multiplications). `None` only if that inversion fails, which a finite point's Z ≠ 0 rules
/// out.
pub(super) fn compress<const N: usize>(points: &[Jacobian; N]) -> Option<[[u8; 33]; N]> {
    // prefix[i] = product of the Z's of the finite points before i.
    let mut prefix = [Fe::ONE; N];
    let mut product = Fe::ONE;
    for (p, slot) in points.iter().zip(prefix.iter_mut()) {
        *slot = product;
        if !p.infinity {
            product = product.mul(&p.z);
        }
    }
    let mut inverse = Option::<Fe>::from(product.invert_vartime())?; // 1/(product of all Z's)
    let mut out = [IDENTITY_BYTES; N];
    for i in (0..N).rev() {
        let p = &points[i];
        if p.infinity {
            continue;
        }
        let z_inv = inverse.mul(&prefix[i]); // 1/Z_i
        inverse = inverse.mul(&p.z); // 1/(product of the Z's before i)
        let z_inv2 = z_inv.square();
        let x = p.x.mul(&z_inv2).normalize();
        let y = p.y.mul(&z_inv2.mul(&z_inv)).normalize();
        out[i][0] = if bool::from(y.is_odd()) { 0x03 } else { 0x02 };
        out[i][1..].copy_from_slice(&x.to_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k256::elliptic_curve::group::GroupEncoding as _;
    use k256::elliptic_curve::ops::Reduce as _;
    use k256::{ProjectivePoint, Scalar};

    use super::*;

    fn affine(p: ProjectivePoint) -> Affine {
        Affine::from_k256(&p.to_affine()).unwrap()
    }

    fn bytes(p: &Jacobian) -> [u8; 33] {
        compress(&[*p]).unwrap()[0]
    }

    fn k256_bytes(p: ProjectivePoint) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(&p.to_affine().to_bytes());
        out
    }

    fn scalar(i: u64) -> Scalar {
        Scalar::reduce(&k256::FieldBytes::from(crate::protocol::sha256(&i.to_be_bytes())))
    }

    /// The sum of `points` (each `(k, negate)` is `±k·G`) and k256's.
    fn accumulate(points: &[(Scalar, bool)]) -> (Jacobian, ProjectivePoint) {
        let mut terms = Terms::new();
        let mut expected = ProjectivePoint::IDENTITY;
        for (k, negate) in points {
            let p = ProjectivePoint::GENERATOR * k;
            terms.push(&affine(p), *negate).unwrap();
            expected += if *negate { -p } else { p };
        }
        (terms.sum(), expected)
    }

    #[test]
    fn identity_encoding_is_what_k256_gives() {
        assert_eq!(AffinePoint::IDENTITY.to_bytes().as_slice(), IDENTITY_BYTES.as_slice());
        assert_eq!(k256_bytes(ProjectivePoint::IDENTITY), IDENTITY_BYTES);
        assert_eq!(bytes(&Jacobian::INFINITY), IDENTITY_BYTES);
        assert!(Affine::from_k256(&AffinePoint::IDENTITY).is_none());
        assert_eq!(compress(&[Jacobian::INFINITY; 3]).unwrap(), [IDENTITY_BYTES; 3]);
    }

    #[test]
    fn special_cases_of_the_mixed_addition() {
        let (a, b) = (scalar(1), scalar(2));
        let cases: Vec<Vec<(Scalar, bool)>> = vec![
            vec![(a, false)],                                                              // O + P
            vec![(a, true)],                                                               // O − P
            vec![(a, false), (a, false)],                                                  // P + P: doubles
            vec![(a, true), (a, true)],                                                    // (−P) + (−P)
            vec![(a, false), (a, true)],                                                   // P + (−P): identity
            vec![(a, true), (a, false)],                                                   // (−P) + P
            vec![(a, false), (a, true), (b, false)],                                       // back from the identity
            vec![(a, false), (b, false), (a + b, false)], // (a + b)·G + (a + b)·G: doubles a Jacobian Z ≠ 1
            vec![(a, false), (b, false), (a + b, true)],  // … and identity from Z ≠ 1
            vec![(a, false), (b, false), (a + b, false), (b, true)], // continues after a doubling
            vec![(Scalar::ONE, false), (Scalar::ONE, false), (Scalar::from(2u64), false)], // G + G + 2G
            vec![(-Scalar::ONE, false), (Scalar::ONE, false)], // (n − 1)·G + G
        ];
        for (i, case) in cases.iter().enumerate() {
            let (acc, expected) = accumulate(case);
            assert_eq!(acc.is_infinity(), expected == ProjectivePoint::IDENTITY, "case {i}");
            assert_eq!(bytes(&acc), k256_bytes(expected), "case {i}");
        }
    }

    #[test]
    fn doubling_matches_k256() {
        let (mut acc, _) = accumulate(&[(scalar(3), false), (scalar(4), false)]);
        let mut expected = ProjectivePoint::GENERATOR * (scalar(3) + scalar(4));
        for _ in 0..20 {
            acc = acc.double();
            expected = expected.double();
            assert_eq!(bytes(&acc), k256_bytes(expected));
        }
        assert!(Jacobian::INFINITY.double().is_infinity());
    }

    #[test]
    fn long_random_sums_match_k256() {
        // Long chains keep the accumulator's magnitudes at their bounds (checked by k256 in debug builds).
        for seed in 0..8u64 {
            let points: Vec<(Scalar, bool)> = (0..MAX_TERMS as u64 - seed)
                .map(|i| (scalar(seed * 1000 + i), (seed + i) % 3 == 0))
                .collect();
            let (acc, expected) = accumulate(&points);
            assert_eq!(bytes(&acc), k256_bytes(expected), "seed {seed}");
        }
    }

    #[test]
    fn terms_refuse_more_than_their_capacity() {
        let p = affine(ProjectivePoint::GENERATOR);
        let mut terms = Terms::new();
        for _ in 0..MAX_TERMS {
            assert!(terms.push(&p, false).is_some());
        }
        assert!(terms.push(&p, true).is_none());
        assert_eq!(terms.as_slice().len(), MAX_TERMS);
    }

    #[test]
    fn batch_compression_matches_k256_with_identities_anywhere() {
        let finite = |i: u64| accumulate(&[(scalar(i), false), (scalar(i + 100), true)]);
        let (p, pe) = finite(1);
        let (q, qe) = finite(2);
        let (r, re) = finite(3);
        let o = Jacobian::INFINITY;
        let oe = ProjectivePoint::IDENTITY;
        assert_eq!(
            compress(&[p, q, r]).unwrap(),
            [k256_bytes(pe), k256_bytes(qe), k256_bytes(re)]
        );
        assert_eq!(compress(&[o, q]).unwrap(), [k256_bytes(oe), k256_bytes(qe)]);
        assert_eq!(compress(&[p, o]).unwrap(), [k256_bytes(pe), k256_bytes(oe)]);
        assert_eq!(
            compress(&[p, o, r]).unwrap(),
            [k256_bytes(pe), k256_bytes(oe), k256_bytes(re)]
        );
        assert_eq!(compress(&[o, o]).unwrap(), [IDENTITY_BYTES; 2]);
    }
}
