-- wrk script of the benchmark (scenario 2, issue 25): the bearer token and the paths to rotate through come as
-- arguments after "--": wrk ... -s scripts/bench-wrk.lua http://127.0.0.1:PORT -- <token> <path> [<path> ...]
-- Each connection walks the paths in turn (different slugs or pages), every request carries the token.
local token
local paths = {}
local counter = 0

function init(args)
  token = args[1]
  for i = 2, #args do paths[#paths + 1] = args[i] end
  counter = math.random(0, #paths - 1)
end

function request()
  counter = counter + 1
  local path = paths[(counter % #paths) + 1]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
