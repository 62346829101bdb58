//! `__cacheline_aligned_in_smp`: a value alone on its cache line(s), so a
//! hot global lock shares its line with nothing another CPU writes.

/// `T`, aligned (and so padded) to a 64-byte cache line.
#[repr(align(64))]
pub(crate) struct CacheAligned<T>(pub T);

impl<T> core::ops::Deref for CacheAligned<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
