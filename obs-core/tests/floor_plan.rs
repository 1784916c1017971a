//! obs-core's floor plan holds: each module imports only what its row of the module table in
//! the crate docs allows (modules below it), nothing imports the crate root, and no import runs
//! in a circle, between modules or between the files of one module.

#[test]
fn modules_import_only_what_the_module_table_allows() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = obs_testkit::floor_plan::violations(&src);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
