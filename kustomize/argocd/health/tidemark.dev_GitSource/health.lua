-- Argo CD health check for tidemark.dev/GitSource (a Git repository of tidemark manifests the
-- controller applies).
-- spec.suspend -> Suspended; no status or generation not yet observed -> Progressing;
-- Stalled=True -> Degraded (an invalid manifest or spec); Reconciling=True -> Progressing;
-- Ready=True -> Healthy; Ready=False -> Degraded (a fetch or apply failed; it is retried).
-- Written for Argo CD's sandbox (Lua 5.1, base and table libraries only: no string library).
local hs = {}

local function condition(kind)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function describe(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return default
end

local function health()
  if obj.spec ~= nil and obj.spec.suspend == true then
    return "Suspended", "Reconciliation is suspended"
  end
  if obj.status == nil then
    return "Progressing", "Waiting for the controller to fetch the source"
  end
  local generation = obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    return "Progressing", "Waiting for the controller to observe generation " .. generation .. " (status is of generation " .. observed .. ")"
  end
  local stalled = condition("Stalled")
  if isTrue(stalled) then
    return "Degraded", describe(stalled, "Stalled")
  end
  local reconciling = condition("Reconciling")
  if isTrue(reconciling) then
    return "Progressing", describe(reconciling, "Reconciling")
  end
  local ready = condition("Ready")
  if ready ~= nil and ready.status == "True" then
    return "Healthy", describe(ready, "Ready")
  end
  if ready ~= nil and ready.status == "False" then
    return "Degraded", describe(ready, "Not ready")
  end
  return "Progressing", "Waiting for the controller to fetch the source"
end

hs.status, hs.message = health()
return hs
