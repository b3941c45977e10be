// node_bench.js -- the Node view of the bench: batond, BullMQ and
// graphile-worker each driven by its own Node client, the same two
// workloads for the three. Run by tests/bench/bench_node.c:
//
//   node node_bench.js SYSTEM TARGET WORKLOAD N QUEUE
//
// SYSTEM   batond | batond-batch | bullmq | graphile
// TARGET   batond: its port; bullmq: the port of its Redis; graphile: a
//          PostgreSQL URL
// WORKLOAD drain (N jobs) | dispatch (N measured rounds)
// QUEUE    a queue name of its own for this run
//
// drain: 8 consumers wait for jobs, then 8 producers add N jobs between
//   them as fast as they can (each waits for its add's answer before the
//   next); the consumers run an empty task and complete each job durably.
//   jobs/s = N / (first add started -> last completion acknowledged).
//   batond: each client has its own keep-alive connection (http.Agent,
//   keepAlive, one socket); a consumer claims once (long-poll) and then
//   completes with "next" so that each job costs it one request (when the
//   server's answer has no "next" member it claims separately);
//   batond-batch: the producers send POST /v1/jobs/batch of 100 jobs.
//   BullMQ: producers Queue.add, each producer its own Queue (connection);
//   consumers NODE_BENCH_BULL_WORKERS Workers (default 1) whose concurrency
//   adds up to 8; completion = the worker's "completed" event
//   (moveToFinished answered).
//   graphile-worker: producers WorkerUtils.addJob, consumers one runner
//   with concurrency 8; completion = "job:complete" (completeJob done).
// dispatch: 8 idle consumers wait (batond: long-poll claim with waitMs
//   30000, then complete with next and the same wait); one producer adds a
//   job every 5 ms (the next add starts 5 ms after the previous one
//   started, or at once when the add took longer); latency = the add call
//   started -> the consumer's task function starts, one clock (same
//   process). The first 20 rounds warm up and are not counted.
//
// Prints one JSON line: {"system","workload","ops","ms","p50","p99",
// "p999","n","errors","requests","next","clientCpu","serverCpu"} ("next":
// batond's answers had it; CPU of the drain in % of one core: this
// process, and NODE_BENCH_SERVER_PID with its children), and for batond's
// drain "commits","writes","commitMs" (its /metrics over the drain; the
// two /metrics reads are not counted in "requests").
"use strict";
const http = require("http");
const { performance } = require("perf_hooks");

const [system, target, workload] = process.argv.slice(2, 5);
const N = Number(process.argv[5] || 4000);
const queue = process.argv[6] || "node-" + process.pid;
const SECRET = process.env.BENCH_SECRET || "bench-secret";
const PRODUCERS = 8, CONSUMERS = 8, BATCH = 100, WAIT_MS = 30000, WARM = 20, PERIOD_MS = 5;
const BULL_WORKERS = Number(process.env.NODE_BENCH_BULL_WORKERS || 1);   // x concurrency = 8
const TIMEOUT_MS = 180000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const task = async () => {};            // the empty task every system runs

function percentiles(lat) {
  lat.sort((a, b) => a - b);
  const at = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * q))] : 0);
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999), n: lat.length };
}

function report(o) {
  console.log(JSON.stringify(Object.assign({ system, workload }, o)));
}

// N split over k clients
function shares(n, k) {
  return Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
}

// Resolves when all of n things are done; done() marks the time.
function finishLine(n) {
  const f = { count: 0, n, t: 0 };
  f.promise = new Promise((r) => { f.resolve = r; });
  f.one = () => {
    if (++f.count === f.n) {
      f.t = performance.now();
      f.resolve();
    }
  };
  f.lower = () => {                     // one of the n will never come
    if (--f.n === f.count) {
      f.t = performance.now();
      f.resolve();
    }
  };
  return f;
}

function deadline(promise, what) {
  let timer;
  return Promise.race([promise, new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(what + ": no end after " + TIMEOUT_MS / 1000 + " s")), TIMEOUT_MS);
  })]).finally(() => clearTimeout(timer));
}

// CPU time so far, ms: this process (the client) and the server
// (NODE_BENCH_SERVER_PID and its children, e.g. PostgreSQL's backends;
// from /proc, clock ticks of 10 ms).
const fs = require("fs");
const serverPid = Number(process.env.NODE_BENCH_SERVER_PID || 0);

function procTicks(pid) {
  try {
    const st = fs.readFileSync("/proc/" + pid + "/stat", "utf8");
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");  // f[0] is field 3 (state)
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch (e) {
    return null;
  }
}

function cpuNow() {
  const u = process.cpuUsage();
  let ticks = 0;
  if (serverPid) {
    for (const d of fs.readdirSync("/proc")) {
      if (!/^[0-9]+$/.test(d))
        continue;
      const t = procTicks(d);
      if (t && (Number(d) === serverPid || t.ppid === serverPid))
        ticks += t.ticks;
    }
  }
  return { client: (u.user + u.system) / 1000, server: serverPid ? ticks * 10 : NaN };
}

// CPU use between two cpuNow() over ms of wall time, in % of one core
function cpuShare(a, b, ms) {
  return { clientCpu: ((b.client - a.client) / ms) * 100, serverCpu: ((b.server - a.server) / ms) * 100 };
}

// ---- batond: a few calls over HTTP/1.1 keep-alive ----------------------------

let requests = 0;

class Baton {
  constructor(port) {
    this.port = Number(port);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  // {status, json}; json null for an empty body
  call(method, path, body) {
    const data = body === undefined ? "" : JSON.stringify(body);
    requests++;
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: "127.0.0.1", port: this.port, method, path, agent: this.agent,
        headers: { authorization: "Bearer " + SECRET, "content-type": "application/json",
                   "content-length": Buffer.byteLength(data) },
      }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          let json = null;
          try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
          resolve({ status: res.statusCode, json });
        });
      });
      req.on("error", reject);
      req.end(data);
    });
  }

  close() {
    this.agent.destroy();
  }
}

let nextSeen = false;

// batond's group commit counters from /metrics: commits, writes, ms in commit
async function commitStats(c) {
  const a = await new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: c.port, method: "GET", path: "/metrics", agent: c.agent,
                               headers: { authorization: "Bearer " + SECRET } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { text += d; });
      res.on("end", () => resolve(text));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
  const num = (name) => {
    const m = a.match(new RegExp("^" + name + " ([0-9.e+]+)$", "m"));
    return m ? Number(m[1]) : NaN;
  };
  return { commits: num("baton_commits_total"), writes: num("baton_writes_total"),
           commitMs: num("baton_commit_duration_ms_sum") };
}

function commitDelta(a, b) {
  return { commits: b.commits - a.commits, writes: b.writes - a.writes, commitMs: b.commitMs - a.commitMs };
}

// The job a claim answer or a complete's "next" carries ({job} or the job).
function jobOf(x) {
  return x && x.job ? x.job : x;
}

// One consumer. Counters in s: claimed (jobs handed to a consumer), asking
// (claims in flight, plain or as "next"). A consumer only asks for another
// job while claimed + asking < s.total, so no request is left parked when
// the last job is done and the drain's end is a completion's answer.
async function batonConsumer(c, id, s, onJob) {
  const worker = "node-" + id;
  let job = null;

  for (;;) {
    if (!job) {
      if (s.claimed + s.asking >= s.total)
        return;
      s.asking++;
      const a = await c.call("POST", "/v1/jobs/claim", { queue, workerId: worker, waitMs: WAIT_MS });
      s.asking--;
      if (a.status === 204)
        continue;
      if (a.status !== 200) {
        s.errors++;
        await sleep(10);
        continue;
      }
      s.claimed++;
      job = jobOf(a.json);
    }
    const stop = await onJob(job);
    const body = { workerId: worker, claimToken: job.claimToken };
    const ask = !stop && s.claimed + s.asking < s.total;
    if (ask) {
      body.next = { waitMs: WAIT_MS };
      s.asking++;
    }
    const a = await c.call("POST", "/v1/jobs/" + job.id + "/complete", body);
    if (ask)
      s.asking--;
    job = null;
    if (a.status !== 200) {
      s.errors++;
      s.finish.lower();
    } else {
      s.finish.one();
      if (a.json && "next" in a.json) {
        nextSeen = true;
        if (a.json.next) {
          s.claimed++;
          job = jobOf(a.json.next);
        }
      }
    }
    if (stop)
      return;
  }
}

async function batondDrain(port, batch) {
  const s = { total: N, claimed: 0, asking: 0, errors: 0, finish: finishLine(N) };
  const clients = Array.from({ length: PRODUCERS + CONSUMERS }, () => new Baton(port));
  const consumers = clients.slice(0, CONSUMERS).map((c, i) => batonConsumer(c, i, s, task));

  await sleep(300);                     // every consumer parked
  const m0 = await commitStats(clients[CONSUMERS]);
  const c0 = cpuNow(), t0 = performance.now();
  const producers = shares(N, PRODUCERS).map(async (n, p) => {
    const c = clients[CONSUMERS + p];
    for (let k = 0; k < n;) {
      if (batch) {
        const m = Math.min(BATCH, n - k);
        const jobs = Array.from({ length: m }, (_, j) => ({ queue, payload: { p, n: k + j } }));
        const a = await c.call("POST", "/v1/jobs/batch", { jobs });
        if (a.status !== 201) {
          s.errors++;
          for (let j = 0; j < m; j++) s.finish.lower();
        }
        k += m;
      } else {
        const a = await c.call("POST", "/v1/jobs", { queue, payload: { p, n: k } });
        if (a.status !== 201) {
          s.errors++;
          s.finish.lower();
        }
        k++;
      }
    }
  });
  await deadline(Promise.all(producers.concat([s.finish.promise])), "drain");
  const ms = s.finish.t - t0, cpu = cpuShare(c0, cpuNow(), performance.now() - t0);
  const commit = commitDelta(m0, await commitStats(clients[CONSUMERS]));
  await Promise.all(consumers);
  clients.forEach((c) => c.close());
  return Object.assign({ ops: (N / ms) * 1000, ms, errors: s.errors }, cpu, commit);
}

// The dispatch producer: one add every PERIOD_MS (from start to start);
// add(t, r) with t the start of the call.
async function paced(rounds, add) {
  let errors = 0, next = performance.now();
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    try {
      await add(t, r);
    } catch (e) {
      errors++;
    }
    next += PERIOD_MS;
    const wait = next - performance.now();
    if (wait > 0)
      await sleep(wait);
    else
      next = performance.now();
  }
  return errors;
}

async function batondDispatch(port) {
  const lat = [];
  const rounds = N + WARM;
  const all = finishLine(rounds);
  const s = { total: Infinity, claimed: 0, asking: 0, errors: 0, finish: finishLine(Infinity) };
  const clients = Array.from({ length: CONSUMERS + 1 }, () => new Baton(port));
  const onJob = async (job) => {
    const p = job.payload;
    if (p.t === 0)
      return true;                      // the stop marker: complete it, ask no more
    const ms = performance.now() - p.t;
    await task(p);
    if (p.r >= WARM)
      lat.push(ms);
    all.one();
    return false;
  };
  const consumers = clients.slice(0, CONSUMERS).map((c, i) => batonConsumer(c, i, s, onJob));
  const prod = clients[CONSUMERS];

  await sleep(300);
  let errors = await paced(rounds, async (t, r) => {
    const a = await prod.call("POST", "/v1/jobs", { queue, payload: { t, r } });
    if (a.status !== 201)
      throw new Error("enqueue " + a.status);
  });
  await Promise.race([all.promise, sleep(10000)]);
  for (let i = 0; i < CONSUMERS; i++)
    await prod.call("POST", "/v1/jobs", { queue, payload: { t: 0 } });
  await deadline(Promise.all(consumers), "dispatch");
  clients.forEach((c) => c.close());
  errors += s.errors + (N - lat.length);
  return Object.assign(percentiles(lat), { errors });
}

// ---- BullMQ on Redis ----------------------------------------------------------

function bullConnection(port) {
  return { host: "127.0.0.1", port: Number(port), maxRetriesPerRequest: null };
}

// Workers adding up to CONSUMERS concurrency, all running processor.
async function bullWorkers(port, processor) {
  const { Worker } = require("bullmq");
  const workers = [];
  for (let i = 0; i < BULL_WORKERS; i++) {
    const conc = shares(CONSUMERS, BULL_WORKERS)[i];
    workers.push(new Worker(queue, processor, { connection: bullConnection(port), concurrency: conc }));
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return workers;
}

async function bullDrain(port) {
  const { Queue } = require("bullmq");
  const finish = finishLine(N);
  let errors = 0;
  const queues = Array.from({ length: PRODUCERS }, () => new Queue(queue, { connection: bullConnection(port) }));
  await Promise.all(queues.map((q) => q.waitUntilReady()));
  const workers = await bullWorkers(port, task);
  workers.forEach((w) => {
    w.on("completed", () => finish.one());
    w.on("failed", () => { errors++; finish.lower(); });
  });
  await sleep(300);
  const c0 = cpuNow(), t0 = performance.now();
  const producers = shares(N, PRODUCERS).map(async (n, p) => {
    for (let k = 0; k < n; k++) {
      try {
        await queues[p].add("drain", { p, n: k });
      } catch (e) {
        errors++;
        finish.lower();
      }
    }
  });
  await deadline(Promise.all(producers.concat([finish.promise])), "drain");
  const ms = finish.t - t0, cpu = cpuShare(c0, cpuNow(), performance.now() - t0);
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(queues.map((q) => q.close()));
  return Object.assign({ ops: (N / ms) * 1000, ms, errors }, cpu);
}

async function bullDispatch(port) {
  const { Queue } = require("bullmq");
  const lat = [];
  const all = finishLine(N + WARM);
  const q = new Queue(queue, { connection: bullConnection(port) });
  await q.waitUntilReady();
  const workers = await bullWorkers(port, async (job) => {
    const ms = performance.now() - job.data.t;
    await task(job.data);
    if (job.data.r >= WARM)
      lat.push(ms);
    all.one();
  });
  await sleep(300);                     // every worker waiting
  let errors = await paced(N + WARM, (t, r) => q.add("dispatch", { t, r }));
  await Promise.race([all.promise, sleep(10000)]);
  await Promise.all(workers.map((w) => w.close()));
  await q.close();
  errors += N - lat.length;
  return Object.assign(percentiles(lat), { errors });
}

// ---- graphile-worker on PostgreSQL --------------------------------------------

const graphileQuiet = () => {
  const { Logger } = require("graphile-worker");
  return new Logger(() => () => {});
};

async function graphileRunner(url, fn) {
  const { run } = require("graphile-worker");
  return run({ connectionString: url, concurrency: CONSUMERS, noHandleSignals: true, logger: graphileQuiet(),
               taskList: { [queue]: fn } });
}

async function graphileDrain(url) {
  const { makeWorkerUtils } = require("graphile-worker");
  const utils = await makeWorkerUtils({ connectionString: url, logger: graphileQuiet() });
  await utils.migrate();
  const finish = finishLine(N);
  let errors = 0;
  const runner = await graphileRunner(url, task);
  runner.events.on("job:complete", ({ error }) => {
    if (error) {
      errors++;
      finish.lower();
    } else {
      finish.one();
    }
  });
  await sleep(300);
  const c0 = cpuNow(), t0 = performance.now();
  const producers = shares(N, PRODUCERS).map(async (n, p) => {
    for (let k = 0; k < n; k++) {
      try {
        await utils.addJob(queue, { p, n: k });
      } catch (e) {
        errors++;
        finish.lower();
      }
    }
  });
  await deadline(Promise.all(producers.concat([finish.promise])), "drain");
  const ms = finish.t - t0, cpu = cpuShare(c0, cpuNow(), performance.now() - t0);
  await runner.stop();
  await utils.release();
  return Object.assign({ ops: (N / ms) * 1000, ms, errors }, cpu);
}

async function graphileDispatch(url) {
  const { makeWorkerUtils } = require("graphile-worker");
  const utils = await makeWorkerUtils({ connectionString: url, logger: graphileQuiet() });
  await utils.migrate();
  const lat = [];
  const all = finishLine(N + WARM);
  const runner = await graphileRunner(url, async (payload) => {
    const ms = performance.now() - payload.t;
    await task(payload);
    if (payload.r >= WARM)
      lat.push(ms);
    all.one();
  });
  await sleep(500);                     // every worker listening
  let errors = await paced(N + WARM, (t, r) => utils.addJob(queue, { t, r }));
  await Promise.race([all.promise, sleep(10000)]);
  await runner.stop();
  await utils.release();
  errors += N - lat.length;
  return Object.assign(percentiles(lat), { errors });
}

// ---- main -----------------------------------------------------------------------

const runs = {
  "batond drain": () => batondDrain(target, false),
  "batond-batch drain": () => batondDrain(target, true),
  "batond dispatch": () => batondDispatch(target),
  "bullmq drain": () => bullDrain(target),
  "bullmq dispatch": () => bullDispatch(target),
  "graphile drain": () => graphileDrain(target),
  "graphile dispatch": () => graphileDispatch(target),
};

async function main() {
  const fn = runs[system + " " + workload];
  if (!fn)
    throw new Error("usage: node node_bench.js batond|batond-batch|bullmq|graphile TARGET drain|dispatch N QUEUE");
  const r = await fn();
  report(Object.assign(r, { requests, next: nextSeen }));
}

main().then(() => process.exit(0), (e) => {
  console.error("node_bench: " + system + " " + workload + ": " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
