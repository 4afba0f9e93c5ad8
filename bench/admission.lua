-- admission.lua -- wrk script: POST one AdmissionReview over and over
-- (keep-alive). The body is the file named by $BENCH_BODY.
local path = assert(os.getenv("BENCH_BODY"), "BENCH_BODY is not set")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
