//! Recording a request allocates nothing, its exemplar included: counted by a global
//! allocator, on the recording thread only (obs' exporter threads allocate meanwhile), around
//! many records of a known series inside a sampled, exported trace.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

struct Counting;

thread_local! {
    /// This thread's allocations (const-initialised: no allocation to reach it).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts the calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_record_with_its_exemplar_allocates_nothing() {
    let obs = obs::test::init_with(obs::Config::new().otlp_endpoint("http://127.0.0.1:9"));
    let _active = obs::test::sampled_context().attach();
    let method = http::Method::GET;
    let record = || {
        obs.record_request(
            &method,
            Some("/users/{id}"),
            500,
            Duration::from_millis(2100),
        );
    };
    let start = ALLOCATIONS.with(Cell::get);
    record(); // the series and its exemplar slots are made once
    let before = ALLOCATIONS.with(Cell::get);
    assert!(before > start, "the counter sees the series being made");
    for _ in 0..10_000 {
        record();
    }
    let allocated = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(allocated, 0, "allocations in 10,000 records");
    let (_, page) = obs.metrics_page("application/openmetrics-text");
    assert!(
        page.contains("trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\""),
        "the exemplar was written: {page}"
    );
}
