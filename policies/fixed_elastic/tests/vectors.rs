//! The worked examples of docs/builtins.md#fixed_elastic, run natively.
#[test]
fn fixed_elastic_passes_its_vectors() {
    ebbtide_sdk::vectors::assert_passes::<ebbtide_policy_fixed_elastic::FixedElastic>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/fixed_elastic.json"
    ));
}
