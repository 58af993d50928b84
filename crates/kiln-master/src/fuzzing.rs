//! Entry points for the fuzz targets of `fuzz/`: the decoders of what the master is sent that
//! can run without a master. Compiled only when fuzzing (`--cfg fuzzing`).

use std::collections::BTreeMap;

use kiln_config::ForceSchedulerConfig;

/// A force form's parameters, as the `force` JSON-RPC call passes them, read against
/// `scheduler`'s fields. What matters is that reading never panics.
pub fn force_form(
    scheduler: &ForceSchedulerConfig,
    params: &serde_json::Map<String, serde_json::Value>,
) {
    let mut errors = BTreeMap::new();
    let workers = ["w1".to_string(), "w2".to_string()];
    let _ = crate::schedulers::force::fill(scheduler, params, &workers, &mut errors);
}

/// A worker's archive of a directory, unpacked as `DirectoryUpload` unpacks it, into a fresh
/// directory. Panics if anything lands beside that directory: an archive must not climb out.
pub fn upload(archive: &[u8], gzipped: bool) {
    let Ok(root) = tempfile::tempdir() else {
        return;
    };
    let dest = root.path().join("dest");
    let compress = gzipped.then_some("gz");
    let _ = crate::builds::transfer::upload::unpack(archive, compress, &dest);
    let beside: Vec<_> = std::fs::read_dir(root.path())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| n != "dest")
                .collect()
        })
        .unwrap_or_default();
    assert!(
        beside.is_empty(),
        "the archive wrote outside its directory: {beside:?}"
    );
}
