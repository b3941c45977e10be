#!/bin/sh
# seeds.sh [DIR] -- write the seed corpora of the libFuzzer targets into
# DIR/<target>/ (default build/fuzz/corpus) from the request bodies and
# fixtures the tests already use (tests/check_*.c, tests/fakehttp.c,
# tests/convex/*) plus a few written here. Files are named by their SHA-1,
# so running it again adds nothing twice. Needs python3.
set -eu
dir=${1:-build/fuzz/corpus}
cd "$(dirname "$0")/../.."
exec python3 - "$dir" <<'PY'
import hashlib, json, os, re, sys, glob

out = sys.argv[1]
SECRET = "fuzz-agent-secret-0123456789"
counts = {}

def put(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
    counts[target] = counts.get(target, 0) + 1

# C string literals, adjacent ones (also across a macro's line breaks) joined
LIT = r'"(?:[^"\\\n]|\\.)*"'
SEQ = LIT + r'(?:(?:\s|\\\n)*' + LIT + r')*'

def unescape(seq):
    parts = re.findall(LIT, seq)
    raw = "".join(p[1:-1] for p in parts)
    return raw.encode("latin-1", "backslashreplace").decode("unicode_escape")

sources = sorted(glob.glob("tests/check_*.c")) + ["tests/fakehttp.c"]
literals = []
calls = []
for path in sources:
    text = open(path, encoding="utf-8", errors="replace").read()
    for m in re.finditer(SEQ, text):
        try:
            literals.append(unescape(m.group(0)))
        except Exception:
            pass
    for m in re.finditer(r'"(GET|POST|PUT|DELETE|PATCH)"\s*,\s*(' + SEQ + r')(?:\s*,\s*(' + SEQ + r'))?', text):
        try:
            calls.append((m.group(1), unescape(m.group(2)), unescape(m.group(3)) if m.group(3) else ""))
        except Exception:
            pass

def as_json(s):
    try:
        return json.loads(s)
    except Exception:
        return None

objects = [s for s in literals if isinstance(as_json(s), dict)]

# ---- fields: JSON bodies under each spec mode ---------------------------------
for s in objects + ['{"s":"x","j":1}', '{"s":"abc","e":"","i":5.0,"j":-9223372036854775808,'
                    '"b":true,"a":null,"o":{},"r":[]}', '{"s":"a\\u0000b","j":1}', '{"j":1e300}']:
    for mode in (0, 1, 2, 3):
        put("fields", bytes([mode]) + s.encode())

# ---- http: every route, and the tests' own requests --------------------------
routes = re.findall(r'^\s*\{"(GET|POST|PUT|DELETE)", "([^"]+)"', open("server/routes.c").read(), re.M)
defaults = {"channel": "whatsapp", "accountId": "default", "id": "1", "key": "creds",
            "module": "agent", "function": "getPendingJobs"}

def pattern_re(p):
    return "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(p)) + "$"

for i, (method, pat) in enumerate(routes):
    params = [defaults.get(n, "x") for n in re.findall(r"\{(\w+)\}", pat)]
    put("http", bytes([i, 0]) + ("\n".join(params + [""]) + "\n{}").encode())
for method, target, body in calls:
    if not target.startswith("/"):
        continue
    path, _, query = target.partition("?")
    req = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}")
    put("http", b"\xf0" + req.encode())
    for i, (m, pat) in enumerate(routes):
        hit = re.match(pattern_re(pat), path)
        if m == method and hit:
            fields = list(hit.groups()) + [query]
            put("http", bytes([i, 0]) + ("\n".join(fields) + "\n" + body).encode())
            break
for raw in ["GET /health HTTP/1.0\r\n\r\n",
            "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET +
            "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"que\r\n13\r\nue\":\"q\",\"payload\":{}}\r\n0\r\n\r\n",
            "GET /v1/jobs?limit=%00&status=%FF HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET + "\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}",
            "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"]:
    put("http", b"\xf0" + raw.encode())

# ---- convex: {path, args} bodies of the tests and the Convex client ----------
for s in objects:
    j = as_json(s)
    if isinstance(j.get("path"), str):
        args = j.get("args", {})
        if isinstance(args, list) and args:
            args = args[0]
        for flags in (0x01, 0x00, 0x04):
            put("convex", bytes([flags]) + (j["path"] + "\n" + json.dumps(args)).encode())
for path in glob.glob("tests/convex/*.mjs"):
    text = open(path).read()
    for m in re.finditer(r"anyApi\.(\w+)\.(\w+),\s*(\{.*?\})\s*\)", text):
        js = re.sub(r"([{,]\s*)(\w+)\s*:", r'\1"\2":', m.group(3))
        if as_json(js) is not None:
            put("convex", bytes([0x01]) + f"{m.group(1)}:{m.group(2)}\n{js}".encode())
            put("convex", bytes([0x04]) + f"{m.group(1)}:{m.group(2)}\n{js}".encode())
for name, args in [("agent:enqueue", '{"queue":"q","payload":{"n":{"$integer":"AQAAAAAAAAA="}},'
                                     '"priority":{"$integer":"BQAAAAAAAAA="}}'),
                   ("agent:enqueue", '{"payload":{"f":{"$float":"AAAAAAAA+H8="},"b":{"$bytes":"aGk="}}}'),
                   ("agent.getPendingJobs:default", "{}"),
                   ("api.agent.getJob", '{"jobId":{"$integer":"//////////8="}}'),
                   ("whatsappSession:set", '{"key":"creds","value":{"me":{"id":"1@s.whatsapp.net"}}}'),
                   ("agent:claimJob", '{"workerId":"w","lockMs":60000}')]:
    put("convex", bytes([0x09]) + f"{name}\n{args}".encode())
    put("convex", bytes([0x29]) + f"{name}\n{args}".encode())

# ---- webhooks: the channels' update bodies ------------------------------------
for s in literals:
    if "update_id" in s and "%" not in s:
        put("webhooks", b"\x00" + s.encode())
        put("webhooks", b"\x04bot2\n" + s.encode())
    if "whatsapp_business_account" in s and "%" not in s:
        put("webhooks", b"\x01" + s.encode())
        put("webhooks", b"\x05default\n" + s.encode())
put("webhooks", b"\x02hub.challenge=1158201444")
put("webhooks", b"\x03hub.mode=subscribe&hub.verify_token=x&hub.challenge=%FF")

# ---- sse: event streams of the tests ------------------------------------------
for s in literals:
    if "data:" in s or s.startswith("id:"):
        body = s.split("\r\n\r\n", 1)[1] if s.startswith("HTTP/") else s
        for chunk in (0, 3):
            put("sse", bytes([chunk]) + body.encode())
for s in [": ping\n\nid: 1\nevent: a.b\ndata: {\"n\":1}\n\n", "id: 2\r\ndata: {\"n\":\r\ndata: 2}\r\n\r\n",
          "id: 3\rdata: x\r\r", "data\n\nid\n\nevent:\n\n:\n\n", "retry: 10\ndata: [1,2]\n\n"]:
    put("sse", b"\x02" + s.encode())

print("seeds:", ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
PY
