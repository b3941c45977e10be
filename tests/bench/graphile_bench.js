// graphile_bench.js -- graphile-worker on the bench's PostgreSQL, the same
// two workloads as batond's (bench_compare.c), driven from Node:
//
//   node graphile_bench.js URL SECONDS ROUNDS
//
// job cycle: 8 clients, each adds a job (WorkerUtils.addJob) and waits
//   until a worker of the runner (concurrency 8) has run it and
//   graphile-worker has committed its completion ("job:complete"), then
//   adds the next; a cycle's latency is add -> completion committed.
// dispatch: the runner's 8 workers wait for jobs (LISTEN/NOTIFY, the
//   default 2 s poll as fallback); one producer adds a job every 3 ms;
//   latency is the add call -> the task function starting.
// Durable defaults: graphile-worker's own settings, PostgreSQL with fsync
// and synchronous_commit on. Prints one JSON line per workload:
//   {"workload":"cycle","ops":..,"p50":..,"p99":..,"p999":..,"errors":..}
"use strict";
const { run, makeWorkerUtils, Logger } = require("graphile-worker");
const { performance } = require("perf_hooks");

const [url, seconds, rounds] = [process.argv[2], Number(process.argv[3] || 5), Number(process.argv[4] || 1000)];
const CLIENTS = 8;
const quiet = new Logger(() => () => {});

function summary(workload, lat, secs, errors) {
  lat.sort((a, b) => a - b);
  const at = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * q))] : 0);
  return JSON.stringify({ workload, ops: lat.length / secs, p50: at(0.5), p99: at(0.99), p999: at(0.999),
                          n: lat.length, errors });
}

async function main() {
  const utils = await makeWorkerUtils({ connectionString: url, logger: quiet });
  await utils.migrate();

  // ---- job cycle ----
  const waiting = new Map();          // job id -> resolve of the client waiting for it
  const early = new Set();            // completed before its client was waiting
  let runner = await run({
    connectionString: url, concurrency: CLIENTS, noHandleSignals: true, logger: quiet,
    taskList: { cycle: async () => {} },
  });
  runner.events.on("job:complete", ({ job }) => {
    const done = waiting.get(String(job.id));
    if (done) {
      waiting.delete(String(job.id));
      done();
    } else {
      early.add(String(job.id));
    }
  });
  async function cycle(i, seq) {
    const t0 = performance.now();
    let finished;
    const completed = new Promise((r) => { finished = r; });
    const job = await utils.addJob("cycle", { c: i, s: seq });
    if (early.delete(String(job.id))) finished();
    else waiting.set(String(job.id), finished);
    await completed;
    return performance.now() - t0;
  }
  let stop = false, errors = 0;
  const lat = [];
  async function client(i, record) {
    for (let seq = 0; !stop; seq++) {
      try {
        const ms = await cycle(i, seq);
        if (record) lat.push(ms);
      } catch (e) {
        if (++errors > 100) return;
      }
    }
  }
  // warm-up, then the measured run
  stop = false;
  let warm = [];
  for (let i = 0; i < CLIENTS; i++) warm.push((async () => { for (let k = 0; k < 20; k++) await cycle(i, -k); })());
  await Promise.all(warm);
  const t0 = performance.now();
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) clients.push(client(i, true));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stop = true;
  await Promise.all(clients);
  console.log(summary("cycle", lat, (performance.now() - t0) / 1000, errors));
  await runner.stop();

  // ---- dispatch latency ----
  const dlat = [];
  let got = 0, allDone;
  const finished = new Promise((r) => { allDone = r; });
  runner = await run({
    connectionString: url, concurrency: CLIENTS, noHandleSignals: true, logger: quiet,
    taskList: {
      dispatch: async (payload) => {
        dlat.push(performance.now() - payload.t);
        if (++got === rounds) allDone();
      },
    },
  });
  await new Promise((r) => setTimeout(r, 500));     // every worker waiting
  const d0 = performance.now();
  let derr = 0;
  for (let r = 0; r < rounds; r++) {
    try {
      await utils.addJob("dispatch", { t: performance.now() });
    } catch (e) {
      derr++;
    }
    await new Promise((res) => setTimeout(res, 3));
  }
  await Promise.race([finished, new Promise((r) => setTimeout(r, 10000))]);
  console.log(summary("dispatch", dlat, (performance.now() - d0) / 1000, derr + rounds - dlat.length));
  await runner.stop();
  await utils.release();
}

main().catch((e) => {
  console.error("graphile_bench: " + (e && e.message));
  process.exit(1);
});
