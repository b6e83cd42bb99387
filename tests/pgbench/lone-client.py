"""One client sending keyed transfers between random accounts, one at a time, on one kept-alive connection:
lone-client.py PORT TOKEN SECONDS ACCOUNTS_FILE. Prints the count and the p50 latency."""
import http.client, json, sys, time, uuid, random
port, token, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
accounts = [l.strip() for l in open(sys.argv[4])]
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
n, lat = 0, []
end = time.time() + seconds
while time.time() < end:
    a, b = random.sample(accounts, 2)
    body = json.dumps({"src_account_id": a, "dst_account_id": b, "amount": "0.01", "direction": "credit"})
    hh = dict(h); hh["Idempotency-Key"] = str(uuid.uuid4())
    t = time.perf_counter()
    c.request("POST", "/api/v1/transaction", body, hh)
    r = c.getresponse(); r.read()
    lat.append(time.perf_counter() - t)
    if r.status not in (200, 201): print(r.status); break
    n += 1
lat.sort()
print(f"{n} requests, p50 {lat[len(lat)//2]*1000:.3f} ms")
