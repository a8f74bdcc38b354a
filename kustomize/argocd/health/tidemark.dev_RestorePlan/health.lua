-- Argo CD health check for tidemark.dev/RestorePlan (a reviewed restore; status.phase mirrors
-- the phase of the Restore it started).
-- generation not yet observed -> Progressing; restore PartiallyFailed, Failed or
-- FailedValidation, or Stalled=True -> Degraded; restore Completed -> Healthy; restore New or
-- InProgress -> Progressing; otherwise the conditions decide (Reconciling=True -> Progressing,
-- Ready=True -> Healthy, Ready=False -> Degraded).
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

local function restore()
  if obj.status.restoreName ~= nil and obj.status.restoreName ~= "" then
    return "Restore " .. obj.status.restoreName
  end
  return "The restore"
end

local function failure(what)
  local why = describe(condition("Stalled"), describe(condition("Ready"), nil))
  if why ~= nil then
    return restore() .. " " .. what .. ": " .. why
  end
  return restore() .. " " .. what
end

local function health()
  if obj.status == nil then
    return "Progressing", "Waiting for the controller to plan the restore"
  end
  local generation = obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    return "Progressing", "Waiting for the controller to observe generation " .. generation .. " (status is of generation " .. observed .. ")"
  end
  local phase = obj.status.phase
  if phase == "PartiallyFailed" then
    return "Degraded", failure("partially failed")
  end
  if phase == "Failed" then
    return "Degraded", failure("failed")
  end
  if phase == "FailedValidation" then
    return "Degraded", failure("failed validation")
  end
  local stalled = condition("Stalled")
  if isTrue(stalled) then
    return "Degraded", describe(stalled, "Stalled")
  end
  if phase == "Completed" then
    return "Healthy", restore() .. " completed"
  end
  if phase == "New" then
    return "Progressing", restore() .. " is queued"
  end
  if phase == "InProgress" then
    return "Progressing", restore() .. " in progress"
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
  return "Progressing", "Waiting for the controller to plan the restore"
end

hs.status, hs.message = health()
return hs
