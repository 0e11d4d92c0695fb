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
//! identity and holds normalized coordinates.
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

/// A point other than the identity in affine coordinates, both normalized (magnitude 1, fully reduced).
#[derive(Clone, Copy, Debug)]
pub(super) struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
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
    #[inline]
    pub(super) fn add_affine(&mut self, p: &Affine) {
        self.add_xy(&p.x, &p.y);
    }

    /// `self −= p` (adds `(x, −y)`).
    #[inline]
    pub(super) fn sub_affine(&mut self, p: &Affine) {
        let minus_y = p.y.negate(1); // magnitude 2
        self.add_xy(&p.x, &minus_y);
    }

    /// `self += (x2, y2)`, a finite point on the curve (`x2` of magnitude 1, `y2` of magnitude ≤ 2).
    ///
    /// With `U2 = x2·Z1²`, `S2 = y2·Z1³` (the second point scaled to the accumulator's Z), `H = U2 − X1` and
    /// `R = S2 − Y1`: `X3 = R² − H³ − 2·X1·H²`, `Y3 = R·(X1·H² − X3) − Y1·H³`, `Z3 = Z1·H` (8M + 3S). The
    /// formulas divide by H implicitly, so H = 0 (same x: the second point is ±self) is handled apart:
    /// R = 0 means the same point (double), otherwise the opposite one (the sum is the identity).
    #[inline]
    fn add_xy(&mut self, x2: &Fe, y2: &Fe) {
        if self.infinity {
            *self = Self {
                x: *x2,
                y: *y2,
                z: Fe::ONE,
                infinity: false,
            };
            return;
        }
        let z1z1 = self.z.square(); // 1
        let u2 = x2.mul(&z1z1); // 1
        let s2 = y2.mul(&self.z.mul(&z1z1)); // 1
        let h = u2 + self.x.negate(X_MAG); // 1 + (X_MAG + 1) = 7
        let r = s2 + self.y.negate(Y_MAG); // 1 + (Y_MAG + 1) = 5
        if bool::from(h.normalizes_to_zero()) {
            if bool::from(r.normalizes_to_zero()) {
                *self = self.double();
            } else {
                *self = Self::INFINITY;
            }
            return;
        }
        let hh = h.square(); // 1
        let hhh = h.mul(&hh); // 1
        let v = self.x.mul(&hh); // 1
        let x3 = r.square() + (hhh + v + v).negate(3); // 1 + 4 = 5 = X_MAG
        let y3 = r.mul(&(v + x3.negate(5))) + self.y.mul(&hhh).negate(1); // 1 + 2 = 3 = Y_MAG
        let z3 = self.z.mul(&h); // 1 = Z_MAG
        *self = Self {
            x: x3,
            y: y3,
            z: z3,
            infinity: false,
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

    /// The accumulator after adding `points` one by one (each `(k, negate)` adds `±k·G`).
    fn accumulate(points: &[(Scalar, bool)]) -> (Jacobian, ProjectivePoint) {
        let mut acc = Jacobian::INFINITY;
        let mut expected = ProjectivePoint::IDENTITY;
        for (k, negate) in points {
            let p = ProjectivePoint::GENERATOR * k;
            if *negate {
                acc.sub_affine(&affine(p));
                expected -= p;
            } else {
                acc.add_affine(&affine(p));
                expected += p;
            }
        }
        (acc, expected)
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
        let mut acc = Jacobian::INFINITY;
        acc.add_affine(&affine(ProjectivePoint::GENERATOR * scalar(3)));
        acc.add_affine(&affine(ProjectivePoint::GENERATOR * scalar(4)));
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
            let points: Vec<(Scalar, bool)> = (0..100)
                .map(|i| (scalar(seed * 1000 + i), (seed + i) % 3 == 0))
                .collect();
            let (acc, expected) = accumulate(&points);
            assert_eq!(bytes(&acc), k256_bytes(expected), "seed {seed}");
        }
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
