-- Argo CD health check for stackpilot's kinds (Stack, StackDeployment, Pipeline, AwsAccount).
-- Every kind reports kstatus conditions (Ready, Reconciling, Stalled) plus ApprovalRequired
-- and, on a StackDeployment, Degraded. Install it for each kind (see the chart README).
local hs = { status = "Progressing", message = "Waiting for stackpilot to report status" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "Waiting for stackpilot to observe generation " .. generation
  return hs
end
local found = {}
for _, c in ipairs(obj.status.conditions) do
  found[c.type] = c
end
local ready, stalled = found["Ready"], found["Stalled"]
local degraded, approval = found["Degraded"], found["ApprovalRequired"]
if stalled ~= nil and stalled.status == "True" then
  return { status = "Degraded", message = stalled.reason .. ": " .. (stalled.message or "") }
end
if degraded ~= nil and degraded.status == "True" then
  return { status = "Degraded", message = degraded.reason .. ": " .. (degraded.message or "") }
end
if ready ~= nil and ready.status == "True" then
  return { status = "Healthy", message = ready.message or "" }
end
local suspended = obj.spec ~= nil and (obj.spec.suspend == true or obj.spec.paused == true)
if suspended or (ready ~= nil and ready.reason == "Suspended") then
  return { status = "Suspended", message = (ready and ready.message) or "suspended" }
end
if (approval ~= nil and approval.status == "True") or (ready ~= nil and ready.reason == "ApprovalRequired") then
  local m = (approval ~= nil and approval.status == "True" and approval.message) or (ready and ready.message) or ""
  return { status = "Suspended", message = "Waiting for approval: " .. m }
end
if ready ~= nil then
  hs.message = ready.reason .. ": " .. (ready.message or "")
end
return hs
