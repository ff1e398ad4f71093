//! The layout of lwhost-web, the browser build of the worker side
//! (host/web/shim): where its memory holds the region's words and the thread
//! slots, as the module publishes it at `lw_layout()` for the JS glue
//! (host/web/js/shim.js) and the wasmtime tier (tests/wasm-test). One
//! definition, here, for the module and its Rust readers; the region offsets
//! it carries come from lwabi (bindgen over the uapi headers), never by hand.

/// The words `lw_layout()` points at: offsets and sizes in the module's
/// memory, all `u32`, in this order. abi/build.rs generates the field names, in
/// this order, into host/web/js/web-layout.js for js/shim.js; the leading
/// version and trailing sentinel catch a module built from another definition.
#[repr(C)]
pub struct Layout {
    pub version: u32,
    pub region: u32,
    pub region_size: u32,
    pub main_alive: u32,
    pub host_doorbell: u32,
    pub host_waiting: u32,
    pub guest_doorbell: u32,
    pub conns: u32,
    pub conn_base: u32,
    pub conn_stride: u32,
    pub conn_state: u32,
    pub conn_generation: u32,
    pub conn_worker_flags: u32,
    pub conn_main_flags: u32,
    pub conn_error: u32,
    pub conn_port: u32,
    pub conn_open_flags: u32,
    pub conn_timeout_ms: u32,
    pub conn_host_len: u32,
    pub conn_host: u32,
    pub conn_tx_head: u32,
    pub conn_tx_tail: u32,
    pub conn_rx_head: u32,
    pub conn_rx_tail: u32,
    pub conn_tx_data: u32,
    pub conn_rx_data: u32,
    pub ring_size: u32,
    pub store_slots: u32,
    pub store_base: u32,
    pub store_stride: u32,
    pub store_state: u32,
    pub store_generation: u32,
    pub store_op: u32,
    pub store_flags: u32,
    pub store_key_len: u32,
    pub store_after_len: u32,
    pub store_len: u32,
    pub store_result: u32,
    pub store_offset: u32,
    pub store_key: u32,
    pub store_data: u32,
    pub store_buf: u32,
    pub key_max: u32,
    pub req_size: u32,
    pub req_op: u32,
    pub req_flags: u32,
    pub req_key: u32,
    pub req_key_len: u32,
    pub req_after_len: u32,
    pub req_after: u32,
    pub req_offset: u32,
    pub req_data: u32,
    pub req_len: u32,
    pub req_reserved: u32,
    pub thread_slots: u32,
    pub thread_base: u32,
    pub thread_stride: u32,
    pub thread_stack: u32,
    pub thread_stack_size: u32,
    pub thread_tls: u32,
    pub thread_tls_size: u32,
    pub thread_scratch: u32,
    pub thread_scratch_size: u32,
    pub thread_owner: u32,
    pub sentinel: u32,
}

/// Ends [`Layout`]: "LAYO".
pub const LAYOUT_SENTINEL: u32 = 0x4f59_414c;
/// Bumped when [`Layout`] changes shape.
pub const LAYOUT_VERSION: u32 = 1;

impl Layout {
    /// How many `u32` words the layout is.
    pub const WORDS: usize = core::mem::size_of::<Layout>() / 4;

    /// The layout from the words a module published, or `None` when they
    /// are not [`Layout::WORDS`] long or their version or sentinel is not
    /// this one's (a module built from another definition).
    pub fn from_words(words: &[u32]) -> Option<Layout> {
        let words: [u32; Layout::WORDS] = words.try_into().ok()?;
        // SAFETY: `Layout` is `repr(C)` with only `u32` fields (checked by
        // the size assertion below), so every array of as many words is a
        // valid value with the same field order.
        let layout: Layout = unsafe { core::mem::transmute(words) };
        (layout.version == LAYOUT_VERSION && layout.sentinel == LAYOUT_SENTINEL).then_some(layout)
    }
}

const _: () = assert!(core::mem::size_of::<Layout>() == 65 * 4 && core::mem::align_of::<Layout>() == 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_words_checks_length_version_and_sentinel() {
        let mut words = [7u32; Layout::WORDS];
        words[0] = LAYOUT_VERSION;
        words[Layout::WORDS - 1] = LAYOUT_SENTINEL;
        words[1] = 0x1000;
        let layout = Layout::from_words(&words).expect("a well-formed layout");
        assert_eq!(layout.region, 0x1000);
        assert_eq!(layout.thread_owner, 7);
        assert!(Layout::from_words(&words[1..]).is_none(), "short");
        let mut stale = words;
        stale[0] = LAYOUT_VERSION + 1;
        assert!(Layout::from_words(&stale).is_none(), "other version");
        let mut torn = words;
        torn[Layout::WORDS - 1] = 0;
        assert!(Layout::from_words(&torn).is_none(), "no sentinel");
    }
}
