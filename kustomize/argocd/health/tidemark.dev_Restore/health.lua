-- Argo CD health check for tidemark.dev/Restore (a record of one restore run).
-- generation not yet observed -> Progressing; PartiallyFailed, Failed, FailedValidation or
-- Stalled=True -> Degraded; Completed -> Healthy; New, InProgress, Deleting -> Progressing;
-- without a phase, the conditions decide (Reconciling=True -> Progressing, Ready=True ->
-- Healthy, Ready=False -> Degraded).
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

local function count(n, word)
  if n == nil then
    n = 0
  end
  if n == 1 then
    return n .. " " .. word
  end
  return n .. " " .. word .. "s"
end

local function failure(prefix)
  if obj.status.failureReason ~= nil and obj.status.failureReason ~= "" then
    return prefix .. ": " .. obj.status.failureReason
  end
  local why = describe(condition("Stalled"), describe(condition("Ready"), nil))
  if why ~= nil then
    return prefix .. ": " .. why
  end
  return prefix
end

local function health()
  if obj.status == nil then
    return "Progressing", "Waiting for the restore to start"
  end
  local generation = obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and observed ~= nil and observed < generation then
    return "Progressing", "Waiting for the controller to observe generation " .. generation .. " (status is of generation " .. observed .. ")"
  end
  local phase = obj.status.phase
  if phase == "PartiallyFailed" then
    return "Degraded", "Restore partially failed: " .. count(obj.status.errors, "error") .. ", " .. count(obj.status.warnings, "warning")
  end
  if phase == "Failed" then
    return "Degraded", failure("Restore failed")
  end
  if phase == "FailedValidation" then
    return "Degraded", failure("Restore failed validation")
  end
  local stalled = condition("Stalled")
  if isTrue(stalled) then
    return "Degraded", describe(stalled, "Stalled")
  end
  if phase == "Completed" then
    local message = "Restore completed: " .. (obj.status.created or 0) .. " created, " .. (obj.status.updated or 0) .. " updated, " .. (obj.status.skipped or 0) .. " skipped"
    if obj.status.warnings ~= nil and obj.status.warnings > 0 then
      message = message .. ", " .. count(obj.status.warnings, "warning")
    end
    return "Healthy", message
  end
  if phase == "New" then
    return "Progressing", "Restore is queued"
  end
  if phase == "InProgress" then
    local progress = obj.status.progress
    if progress ~= nil and progress.totalItems ~= nil and progress.totalItems > 0 then
      return "Progressing", "Restore in progress: " .. (progress.itemsRestored or 0) .. " of " .. count(progress.totalItems, "item") .. " restored"
    end
    return "Progressing", "Restore in progress"
  end
  if phase == "Deleting" then
    return "Progressing", "Restore is being deleted"
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
  return "Progressing", "Waiting for the restore to start"
end

hs.status, hs.message = health()
return hs
