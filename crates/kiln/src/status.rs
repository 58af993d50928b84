//! `kiln status`: a one-shot summary of a master, as the old status clients gave it: each
//! builder's last build and its result, the builds running now, and the requests waiting.

use std::fmt::Write as _;

use clap::Args;
use serde_json::Value;

use crate::http::{MasterArgs, result_name};

#[derive(Args)]
pub struct Status {
    #[command(flatten)]
    pub master: MasterArgs,
}

/// Reads the master and returns what to print.
pub async fn run(args: Status) -> anyhow::Result<String> {
    let master = args.master.connect()?;
    let builders = master.get_json("builders?order=name").await?;
    let latest = master
        .get_json("builds?order=-buildid&limit=500&field=buildid&field=builderid&field=number&field=results&field=state_string&field=complete")
        .await?;
    let pending = master
        .get_json("buildrequests?complete=false&field=buildrequestid&field=claimed")
        .await?;
    let builds: &[Value] = latest["builds"].as_array().map_or(&[], |b| b.as_slice());
    let mut out = String::new();
    let width = builders["builders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(7)
        .max(7);
    writeln!(
        out,
        "{:width$}  {:>6}  {:9}  state",
        "builder", "build", "result"
    )?;
    for b in builders["builders"].as_array().into_iter().flatten() {
        let name = b["name"].as_str().unwrap_or("?");
        let last = builds.iter().find(|x| x["builderid"] == b["builderid"]);
        match last {
            Some(x) => writeln!(
                out,
                "{name:width$}  {:>6}  {:9}  {}",
                format!("#{}", x["number"]),
                if x["complete"] == true {
                    result_name(x["results"].as_i64())
                } else {
                    "running"
                },
                x["state_string"].as_str().unwrap_or("")
            )?,
            None => writeln!(out, "{name:width$}  {:>6}  {:9}", "-", "-")?,
        }
    }
    let running = builds.iter().filter(|x| x["complete"] == false).count();
    let waiting = pending["buildrequests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["claimed"] == false)
        .count();
    writeln!(out, "{running} running, {waiting} waiting")?;
    Ok(out)
}
