//! The worked examples of docs/builtins.md#pd_coordinated, run natively.
#[test]
fn pd_coordinated_passes_its_vectors() {
    ebbtide_sdk::vectors::assert_passes::<ebbtide_policy_pd_coordinated::PdCoordinated>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/pd_coordinated.json"
    ));
}
