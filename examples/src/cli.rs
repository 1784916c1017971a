//! The benchmarks' command lines: `--name value` flags with defaults.

/// The value after `name` in `args`, parsed, or `default` when it is absent or does not parse.
///
/// ```
/// let args: Vec<String> = ["bench", "--rounds", "5"].map(String::from).to_vec();
/// assert_eq!(obs_examples::cli::flag(&args, "--rounds", 3), 5);
/// assert_eq!(obs_examples::cli::flag(&args, "--clients", 6), 6);
/// ```
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
