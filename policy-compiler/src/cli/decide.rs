//! `meshward decide`: raw requests through the filter's pipeline, offline.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use meshward_policy::outcome::OfflineFilter;
use meshward_policy::raw::RawRequest;
use meshward_policy::source_map::SourceMap;
use serde_json::json;

use super::Exit;

/// `meshward decide` arguments.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The plugin configuration the filter runs with (`meshward compile`'s
    /// output, or what Envoy or Istio delivers), identity settings included.
    #[arg(long, value_name = "PLUGIN_JSON")]
    config: PathBuf,
    /// Raw requests, one JSON object per line (`-` = stdin).
    requests: PathBuf,
}

/// Decides every request line; prints one JSON answer per line. A line that
/// is not a request gets an `error` answer (the others are still decided)
/// and the exit code is 2.
pub fn decide_command(args: &DecideArgs) -> Result<Exit, String> {
    let config = std::fs::read(&args.config)
        .map_err(|e| format!("cannot read {}: {e}", args.config.display()))?;
    let mut filter = OfflineFilter::new(&config, SourceMap::default())
        .map_err(|why| format!("{}: {why}", args.config.display()))?;
    let input: Box<dyn BufRead> = if args.requests.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.requests)
            .map_err(|e| format!("cannot read {}: {e}", args.requests.display()))?;
        Box::new(BufReader::new(file))
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut stdout = std::io::stdout().lock();
    let mut exit = Exit::Ok;
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("reading requests: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let answer = match serde_json::from_str::<RawRequest>(&line) {
            Err(e) => {
                exit = Exit::Usage;
                json!({"line": number, "error": format!("not a request: {e}")})
            }
            Ok(request) => match request.input(now) {
                Err(e) => {
                    exit = Exit::Usage;
                    json!({"line": number, "id": request.id, "error": e.to_string()})
                }
                Ok(facts) => {
                    let outcome = filter.decide_input(&facts);
                    let mut value = outcome.to_json();
                    if let Some(object) = value.as_object_mut() {
                        object.insert("line".to_owned(), json!(number));
                        object.insert("id".to_owned(), json!(request.id));
                    }
                    value
                }
            },
        };
        writeln!(stdout, "{answer}").map_err(|e| format!("writing: {e}"))?;
    }
    Ok(exit)
}
