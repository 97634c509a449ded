//! The worked examples of docs/builtins.md#buffer, run natively.
#[test]
fn buffer_passes_its_vectors() {
    ebbtide_sdk::vectors::assert_passes::<ebbtide_policy_buffer::Buffer>(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/buffer.json"
    ));
}
