//! The deploy benchmark's Markdown report, and the raw data behind it (every request as CSV, the
//! swaps, the build logs, the logs of the server, the agent and Caddy).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::push_to_live::PushRun;
use super::rollback::Rollback;
use super::scene::Bench;
use super::swaps::SwapRun;
use super::{Args, DRAIN_MS, HEALTH_INTERVAL_MS, HEALTH_RETRIES, Measured, STOP_GRACE_S};
use crate::edge_load::{Answer, HELD_MS, REQUEST_TIMEOUT, Sample};
use crate::report::{self, median};

/// The raw data behind the report, for a closer look: the logs, and every request as CSV
/// (`due_ms,sent_ms,done_ms,latency_ms,outcome`; times in milliseconds since the epoch).
pub(super) async fn write_samples(
    dir: &Path,
    bench: &Bench,
    measured: Option<&Measured>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (from, to) in [
        ("wharf-deploy.log", "wharf-server.log"),
        ("agent.log", "wharf-agent.log"),
        ("work/edge/caddy.log", "caddy.log"),
    ] {
        let _ = std::fs::copy(bench.scene.dir.path().join(from), dir.join(to));
    }
    let Some(measured) = measured else {
        return Ok(());
    };
    let csv = |samples: &[Sample]| {
        let mut text = String::from("due_ms,sent_ms,done_ms,latency_ms,outcome\n");
        for sample in samples {
            let outcome = match &sample.answer {
                Answer::Ok(body) => format!("200 {body}"),
                Answer::Status(status) => status.to_string(),
                Answer::Failed(kind) => kind.replace(',', ";"),
            };
            let _ = writeln!(
                text,
                "{:.1},{:.1},{:.1},{:.1},{outcome}",
                sample.due_ms,
                sample.sent_ms,
                sample.done_ms,
                sample.latency_ms()
            );
        }
        text
    };
    let swaps = |run: &SwapRun| {
        let mut text = String::from("started_ms,seconds,version\n");
        for swap in &run.swaps {
            let _ = writeln!(
                text,
                "{:.1},{:.3},{}",
                swap.started_ms, swap.seconds, swap.version
            );
        }
        text
    };
    let [blue_green, recreate] = &measured.rollbacks;
    let files = [
        ("wharf-swaps-requests.csv", csv(&measured.wharf.samples)),
        ("wharf-swaps.csv", swaps(&measured.wharf)),
        ("script-swaps-requests.csv", csv(&measured.script.samples)),
        ("script-swaps.csv", swaps(&measured.script)),
        (
            "unhealthy-blue-green-requests.csv",
            csv(&blue_green.samples),
        ),
        ("unhealthy-recreate-requests.csv", csv(&recreate.samples)),
        (
            "unhealthy.csv",
            format!(
                "strategy,deploy_sent_ms,verdict_ms\nblue-green,{:.1},{:.1}\nrecreate,{:.1},{:.1}\n",
                blue_green.deploy_sent_ms,
                blue_green.verdict_ms,
                recreate.deploy_sent_ms,
                recreate.verdict_ms
            ),
        ),
    ];
    for (name, text) in files {
        report::write(&dir.join(name), &text)?;
    }
    // Wharf's build logs, with the time of every line.
    for run in &measured.wharf_runs {
        let logs = bench
            .scene
            .get_json(&format!("/v1/builds/{}/logs", run.build_id))
            .await?;
        let mut text = String::new();
        for line in logs["lines"].as_array().into_iter().flatten() {
            let _ = writeln!(
                text,
                "{} {}",
                line["at"].as_str().unwrap_or_default(),
                line["text"].as_str().unwrap_or_default()
            );
        }
        report::write(
            &dir.join(format!("wharf-build-{}.log", run.build_id)),
            &text,
        )?;
    }
    Ok(())
}

pub(super) fn fmt_ms(value: Option<f64>) -> String {
    report::ms(value)
}

pub(super) fn seconds_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn render(args: &Args, bench: &Bench, measured: &Measured) -> String {
    let Measured {
        wharf,
        script,
        rollbacks,
        wharf_runs,
        pipeline_runs,
        preview_runs,
    } = measured;
    let mut out = String::new();
    report::header(
        &mut out,
        "Deploy: failed requests, rollback, push to live, previews",
        &args.wharf,
        &format!(
            "`wharf server` and one `wharf agent` (labels build,deploy; Podman; its own Caddy {} as the edge on {}), registry: Debian `docker-registry` on loopback, repository served by the GitHub stand-in over git's smart HTTP",
            report::version_of(Path::new("caddy"), &["version"]),
            bench.edge_listen
        ),
    );
    let _ = writeln!(
        out,
        "- Load: `GET /` through the edge with a `Host` header, open loop at {rate} requests/s (request i due at t0 + i/rate, each in its own task on a keep-alive pool, {timeout} s client timeout). A request **fails** when it gets no answer (timeout, refused, reset) or a status other than 200; latency counts from its due time. *Held*: answered 200, but more than {held} ms after it was due.\n\
- Services: port 8080, health probe `GET /` every {interval} ms, unhealthy after {retries} failures in a row, drain {drain} ms, stop grace {grace} s (busybox ignores SIGTERM, so every stop takes the full grace). The scripts use the same probe interval, failure count and stop grace.\n\
- Images: `FROM scratch` + busybox httpd answering `A` or `B` at `/`; `C` has no `/` page (404), so its probe fails.\n",
        rate = args.rate,
        timeout = REQUEST_TIMEOUT.as_secs(),
        held = HELD_MS,
        interval = HEALTH_INTERVAL_MS,
        retries = HEALTH_RETRIES,
        drain = DRAIN_MS,
        grace = STOP_GRACE_S,
    );

    // Failed requests during swaps.
    let _ = writeln!(
        out,
        "## Failed requests while the version changes\n\n\
{swaps} swaps between A and B under load, (a) by Wharf (`POST /v1/services/site/deploy`, blue-green; each swap waits until the old container has drained and stopped, so all of every deploy is inside the window) and (b) by `bench/stop-start-deploy.sh` (the seed's deploy script: pull, stop the old container, start the new one on the same published port, probe, roll back on failure). Both behind the same Caddy route (`wharf.site.production`) (for (b) its upstream is pointed at the script's fixed port through Caddy's admin API, keeping Wharf's retry settings: `try_duration` 5 s, `try_interval` 100 ms). One load run per method, 1 s of load before the first swap and after the last.\n\n\
| | (a) Wharf blue-green | (b) stop-then-start script |\n|---|---:|---:|",
        swaps = args.swaps
    );
    let row = |out: &mut String, name: &str, a: String, b: String| {
        let _ = writeln!(out, "| {name} | {a} | {b} |");
    };
    let (a, b) = (&wharf.summary, &script.summary);
    row(
        &mut out,
        "requests sent",
        a.requests.to_string(),
        b.requests.to_string(),
    );
    row(
        &mut out,
        "achieved rate",
        format!("{:.0} req/s over {:.1} s", a.rate(), a.seconds),
        format!("{:.0} req/s over {:.1} s", b.rate(), b.seconds),
    );
    row(
        &mut out,
        "**failed requests**",
        format!("**{}**", a.failed()),
        format!("**{}**", b.failed()),
    );
    row(
        &mut out,
        "failures by kind",
        a.failures_text(),
        b.failures_text(),
    );
    row(
        &mut out,
        "200 answers by version",
        a.versions_text(),
        b.versions_text(),
    );
    row(
        &mut out,
        "latency p50 / p99 / max",
        format!(
            "{} / {} / {}",
            fmt_ms(a.p50_ms),
            fmt_ms(a.p99_ms),
            fmt_ms(a.max_ms)
        ),
        format!(
            "{} / {} / {}",
            fmt_ms(b.p50_ms),
            fmt_ms(b.p99_ms),
            fmt_ms(b.max_ms)
        ),
    );
    row(
        &mut out,
        &format!("held (> {HELD_MS} ms)"),
        a.held.to_string(),
        b.held.to_string(),
    );
    row(
        &mut out,
        "longest time without a 200 answer",
        fmt_ms(Some(a.longest_gap_ms)),
        fmt_ms(Some(b.longest_gap_ms)),
    );
    row(
        &mut out,
        "before the first deploy: latency p99 / max",
        format!(
            "{} / {}",
            fmt_ms(wharf.before.p99_ms),
            fmt_ms(wharf.before.max_ms)
        ),
        format!(
            "{} / {}",
            fmt_ms(script.before.p99_ms),
            fmt_ms(script.before.max_ms)
        ),
    );
    row(
        &mut out,
        "load generator's send lag p99 / max",
        format!(
            "{} / {}",
            fmt_ms(a.send_lag_p99_ms),
            fmt_ms(a.send_lag_max_ms)
        ),
        format!(
            "{} / {}",
            fmt_ms(b.send_lag_p99_ms),
            fmt_ms(b.send_lag_max_ms)
        ),
    );
    let swap_seconds = |run: &SwapRun| {
        let mut all: Vec<f64> = run.swaps.iter().map(|swap| swap.seconds).collect();
        let listed = seconds_list(&all);
        format!("{:.2} s ({listed})", median(&mut all))
    };
    row(
        &mut out,
        "deploy time per swap, median (all)",
        swap_seconds(wharf),
        swap_seconds(script),
    );
    let _ = writeln!(
        out,
        "\nWharf's deploy time is `POST …/deploy` → the release `live` (pull, start beside the old, probe, route); the script's is its wall time (pull, stop, start, probe, remove the old). Versions deployed in order: {}.\n\n\
Goal (a): 0 failed requests — {}. (b) is reported, not judged: {} failed.\n",
        wharf
            .swaps
            .iter()
            .map(|swap| swap.version.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        report::met(a.failed() == 0),
        b.failed(),
    );
    if b.failed() == 0 && b.held > 0 {
        let _ = writeln!(
            out,
            "The script's stop-then-start leaves nothing listening on the port for a while; Caddy's route retries a refused upstream for up to 5 s, so those requests were held (see the max latency and the longest time without an answer) rather than failed. A route without retries would have failed them.\n"
        );
    }

    // Unhealthy version.
    let _ = writeln!(
        out,
        "## An unhealthy version: from the verdict to every request served by the old version\n\n\
Under the same load, image C (404 at `/`) is deployed to a service running a healthy version. The *verdict* is the time the server recorded the rollout `rolled_back` (the release's `finished_at`; server and benchmark share this machine's clock). A request is *not served by the old version* when it failed or another version answered it; one held up and then answered 200 by the old version counts as served, late (held requests are counted on their own row). **Verdict → restored** is from the verdict to the due time of the last request the old version did not serve, so every request sent after that was served by it; negative means that happened before the verdict was recorded, *all served* means the old version served every request of the window.\n\n\
| | blue-green (`site`) | recreate (`classic`) |\n|---|---:|---:|"
    );
    let (g, r) = (&rollbacks[0], &rollbacks[1]);
    let both = |out: &mut String, name: &str, f: &dyn Fn(&Rollback) -> String| {
        let _ = writeln!(out, "| {name} | {} | {} |", f(g), f(r));
    };
    both(&mut out, "old version", &|x| x.old.clone());
    both(&mut out, "deploy sent → verdict", &|x| {
        fmt_ms(Some(x.verdict_ms - x.deploy_sent_ms))
    });
    both(&mut out, "requests in the window", &|x| {
        x.summary.requests.to_string()
    });
    both(&mut out, "**failed requests**", &|x| {
        format!("**{}**", x.summary.failed())
    });
    both(&mut out, "answered by another version", &|x| {
        x.other_version.to_string()
    });
    both(&mut out, "not served by the old version", &|x| {
        x.not_served.to_string()
    });
    both(
        &mut out,
        "those were due from … to (relative to the verdict)",
        &|x| match x.not_served_span {
            Some((first, last)) => format!(
                "{} … {}",
                fmt_ms(Some(first - x.verdict_ms)),
                fmt_ms(Some(last - x.verdict_ms))
            ),
            None => "—".to_owned(),
        },
    );
    both(
        &mut out,
        "**verdict → restored**",
        &|x| match x.verdict_to_restored_ms() {
            Some(ms) => format!("**{}**", fmt_ms(Some(ms))),
            None => "**all served**".to_owned(),
        },
    );
    both(
        &mut out,
        &format!("held (> {HELD_MS} ms), all / due after the verdict"),
        &|x| format!("{} / {}", x.summary.held, x.held_after_verdict),
    );
    both(&mut out, "latency p50 / p99 / max", &|x| {
        format!(
            "{} / {} / {}",
            fmt_ms(x.summary.p50_ms),
            fmt_ms(x.summary.p99_ms),
            fmt_ms(x.summary.max_ms)
        )
    });
    both(&mut out, "longest time without a 200 answer", &|x| {
        fmt_ms(Some(x.summary.longest_gap_ms))
    });
    both(&mut out, "before the deploy: latency p99 / max", &|x| {
        format!("{} / {}", fmt_ms(x.before.p99_ms), fmt_ms(x.before.max_ms))
    });
    both(&mut out, "load generator's send lag p99 / max", &|x| {
        format!(
            "{} / {}",
            fmt_ms(x.summary.send_lag_p99_ms),
            fmt_ms(x.summary.send_lag_max_ms)
        )
    });
    both(&mut out, "goal: restored within 1 s of the verdict", &|x| {
        report::met(x.goal_met()).to_owned()
    });
    let _ = writeln!(
        out,
        "\nRollback reasons: blue-green: {:?}; recreate: {:?}.\n\n\
What this measures: with blue-green the old version is never stopped and the route never leaves it, so the expected result is that it serves every request; the numbers show whether that holds under load. With recreate the old container is stopped before C starts and started again after C fails, and only then is the verdict reported, while the route keeps pointing at the old port: the outage lies before the verdict. Caddy retries a refused port for 5 s, so during it requests are held, then answered 502; what happens once the old container is starting again is in the failure kinds below. The goal as the issue words it (from the verdict) can be met while requests failed for seconds before the verdict: read the failed-request and longest-gap rows with it.\n\n\
Failures by kind: blue-green: {}; recreate: {}.\n",
        g.reason,
        r.reason,
        g.summary.failures_text(),
        r.summary.failures_text()
    );

    // Push to live.
    let mut wharf_seconds: Vec<f64> = wharf_runs.iter().map(|run| run.seconds).collect();
    let mut pipeline_seconds = pipeline_runs.to_vec();
    let wharf_all = seconds_list(&wharf_seconds);
    let pipeline_all = seconds_list(&pipeline_seconds);
    let wharf_median = median(&mut wharf_seconds);
    let pipeline_median = median(&mut pipeline_seconds);
    let ratio = wharf_median / pipeline_median;
    let part = |f: &dyn Fn(&PushRun) -> f64| {
        let mut values: Vec<f64> = wharf_runs.iter().map(f).collect();
        median(&mut values)
    };
    let _ = writeln!(
        out,
        "## Push received → new version live\n\n\
A new commit of a small repository (the same busybox site; each run changes `index.html`) on `acme/app`, served by the GitHub stand-in. **Wharf**: a signed `push` webhook → build on the agent (fetch the commit, `podman build`, push) → release → blue-green rollout; timed from sending the webhook to the edge answering the new page (polled every 10 ms). **Pipeline**: `bench/push-pipeline.sh` — `git fetch --depth 1` of the commit (installation token minted before timing), `podman build`, `podman push`, `podman untag`, `podman pull`, `podman run`, `curl` every {interval} ms until 200 — timed by its wall time. One untimed run of each first, then {runs} interleaved runs of each; medians.\n\n\
| | seconds (median) | all runs |\n|---|---:|---|\n\
| Wharf: push sent → edge answers the new version | {wharf_median:.2} | {wharf_all} |\n\
| Pipeline: fetch, build, push, pull, run, probe | {pipeline_median:.2} | {pipeline_all} |\n\n\
Wharf ÷ pipeline: **{ratio:.2}×** (goal: at most 1.10×) — {met}.\n\n\
Where Wharf's time goes (medians, from the server's own timestamps; they need not add up exactly to the total, which also holds the edge poll):\n\n\
| step | ms |\n|---|---:|\n\
| push sent → build queued (webhook stored) | {queued:.0} |\n\
| build queued → claimed by the agent | {claimed:.0} |\n\
| build claimed → image pushed | {build:.0} |\n\
| image pushed → release created | {release:.0} |\n\
| release created → live (claim, pull, start, probe, route) | {rollout:.0} |\n",
        interval = HEALTH_INTERVAL_MS,
        runs = args.runs,
        met = report::met(ratio <= 1.10),
        queued = part(&|run| run.to_queued_ms),
        claimed = part(&|run| run.to_claimed_ms),
        build = part(&|run| run.build_ms),
        release = part(&|run| run.to_release_ms),
        rollout = part(&|run| run.rollout_ms),
    );

    // Previews.
    let ratios: Vec<f64> = preview_runs
        .iter()
        .zip(wharf_runs)
        .map(|(preview, push)| preview.seconds / push.seconds)
        .collect();
    let mut preview_seconds: Vec<f64> = preview_runs.iter().map(|run| run.seconds).collect();
    let mut removed_seconds: Vec<f64> =
        preview_runs.iter().map(|run| run.removed_seconds).collect();
    let preview_all = seconds_list(&preview_seconds);
    let removed_all = seconds_list(&removed_seconds);
    let ratio_all = seconds_list(&ratios);
    let preview_median = median(&mut preview_seconds);
    let removed_median = median(&mut removed_seconds);
    let removed_worst = removed_seconds.iter().copied().fold(0.0, f64::max);
    let mut sorted_ratios = ratios.clone();
    let ratio_median = median(&mut sorted_ratios);
    let ratio_worst = ratios.iter().copied().fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "\n## Pull request opened → preview live; closed → nothing left\n\n\
Each run, interleaved with the push-to-live runs above: a new commit on a branch of `acme/app` and a signed `pull_request` (`opened`, by the repository's owner) webhook → build → release to `app-pr-N` → the edge answering the new page at `pr-N.app.test`; then `closed` → until no container, network or volume labelled for `app-pr-N` is left, the edge no longer routes `pr-N.app.test`, the image is gone from the host and the registry answers 404 for its manifest (polled every 20 ms). One untimed run first.\n\n\
| | median | worst | all runs |\n|---|---:|---:|---|\n\
| pull request opened → preview answers (s) | {preview_median:.2} | {preview_worst:.2} | {preview_all} |\n\
| ÷ push → live of the same run | {ratio_median:.2}× | {ratio_worst:.2}× | {ratio_all} |\n\
| pull request closed → nothing left (s) | {removed_median:.2} | {removed_worst:.2} | {removed_all} |\n\n\
Preview ÷ push to live: goal at most 1.10× on the median and the worst run — {ratio_met}. Closed → nothing left: goal under 5 s on the median and the worst run — {removed_met}.\n",
        preview_worst = preview_runs
            .iter()
            .map(|run| run.seconds)
            .fold(0.0, f64::max),
        ratio_met = report::met(ratio_median <= 1.10 && ratio_worst <= 1.10),
        removed_met = report::met(removed_median < 5.0 && removed_worst < 5.0),
    );
    out
}
