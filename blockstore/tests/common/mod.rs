//! Helpers shared by this crate's test files.

use cairn_blockstore::testing::{BLOCKS, ModelOp};
use proptest::prelude::*;

/// Any model operation; `with_reopen` adds reopening, for stores that can.
pub fn model_op(with_reopen: bool) -> impl Strategy<Value = ModelOp> {
    let idx = 0..BLOCKS;
    let ops = prop_oneof![
        idx.clone().prop_map(ModelOp::Put),
        (idx.clone(), idx.clone()).prop_map(|(a, b)| ModelOp::PutMany(a, b)),
        idx.clone().prop_map(ModelOp::Get),
        idx.clone().prop_map(ModelOp::Has),
        idx.clone().prop_map(ModelOp::Delete),
        idx.prop_map(ModelOp::Corrupt),
    ];
    let reopen_weight = u32::from(with_reopen);
    prop_oneof![6 => ops, reopen_weight => Just(ModelOp::Reopen)]
}
