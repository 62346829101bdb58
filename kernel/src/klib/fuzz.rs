//! Input for property tests of the kernel's text parsers (the command
//! line, pidctl): any text, and any bytes decoded lossily, so invalid
//! UTF-8 turns into replacement characters at random places.

use proptest::prelude::*;

/// Arbitrary text, half of it from arbitrary bytes.
pub(crate) fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}
