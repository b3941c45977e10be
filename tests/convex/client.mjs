// client.mjs URL SECRET -- the unmodified ConvexHttpClient with anyApi, the
// way an existing TypeScript worker talks to its backend. Prints one JSON
// object of results for the C test to check.
import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";

const [url, secret] = process.argv.slice(2);
const client = new ConvexHttpClient(url);
client.setAdminAuth(secret);
const out = {};

out.enqueued = await client.mutation(anyApi.agent.enqueue, { payload: { text: "from convex" } });
out.claimed = await client.mutation(anyApi.agent.claimJob, { workerId: "ts-worker", lockMs: 60000 });
out.completed = await client.mutation(anyApi.agent.completeJob, {
  jobId: out.claimed.id, workerId: "ts-worker", claimToken: out.claimed.claimToken, result: { ok: true },
});
out.lease = await client.mutation(anyApi.whatsappLeases.acquireLease, { accountId: "default", ownerId: "ts-wa", ttlMs: 30000 });
out.owned = await client.query(anyApi.whatsappLeases.listOwnedAccounts, { ownerId: "ts-wa" });
out.first = await client.mutation(anyApi.inboundDedupe.checkAndRegister, { channel: "whatsapp", channelMessageId: "ts-1" });
out.second = await client.mutation(anyApi.inboundDedupe.checkAndRegister, { channel: "whatsapp", channelMessageId: "ts-1" });
await client.mutation(anyApi.whatsappSession.set, { key: "creds", value: { me: { id: "1@s.whatsapp.net" } } });
out.session = await client.query(anyApi.whatsappSession.getAll, {});
try {
  await client.mutation(anyApi.agent.completeJob, {
    jobId: out.claimed.id, workerId: "ts-worker", claimToken: "stale", result: {},
  });
  out.staleError = null;
} catch (e) {
  out.staleError = { message: String(e.message), code: e.data && e.data.code };
}
try {
  await client.query(anyApi.nothing.here, {});
} catch (e) {
  out.unknown = String(e.message);
}
console.log(JSON.stringify(out));
