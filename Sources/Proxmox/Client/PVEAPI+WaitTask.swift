import Foundation

extension PVEAPI {
    /// Polls a task until it has stopped and returns its final status.
    ///
    /// Succeeds on `OK` and `WARNINGS: n`; any other exit status throws `.taskFailed` with the exit
    /// status and the last lines of the task log (authorization and locks are often checked inside
    /// the task, so an accepted POST is no success yet). A task that is briefly invisible (HTTP 400
    /// `no such task` right after it was forked) is polled again. Polling backs off from
    /// `initialInterval` to `maxInterval`; exceeding `timeout` throws `.timeout`; cancellation of the
    /// calling task throws `CancellationError`.
    public func waitTask(
        _ upid: UPID, timeout: Duration = .seconds(600), initialInterval: Duration = .milliseconds(100),
        maxInterval: Duration = .seconds(2), logTailLines: Int = 20
    ) async throws -> PVETaskStatus {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var interval = initialInterval
        while true {
            try Task.checkCancellation()
            do {
                let status = try await taskStatus(upid)
                if !status.isRunning {
                    if status.succeeded { return status }
                    let exit = status.exitStatus ?? "unexpected status"
                    let lines = (try? await taskLog(upid, start: 0, limit: 0)) ?? []
                    var err = PVEError(
                        code: .taskFailed, message: "task \(upid.type) \(upid.id) failed: \(exit)", exitStatus: exit,
                        logTail: lines.suffix(logTailLines).map(\.text), upid: upid)
                    // A lock or permission failure inside the task keeps its own code.
                    var probe = PVEError(code: .server, message: exit)
                    PVEError.classify(&probe)
                    if probe.code == .locked { err.lock = probe.lock }
                    if let (path, priv) = PVEError.parsePermissionFailure(exit) {
                        err.path = path
                        err.privilege = priv
                    }
                    throw err
                }
            } catch let e as PVEError where e.code == .badRequest || e.code == .transport || e.code == .proxy {
                // Not visible yet (just forked / proxied to another node), or a transient hop failure: retry.
                if clock.now >= deadline { throw e }
            }
            if clock.now >= deadline {
                throw PVEError(code: .timeout, message: "task \(upid) still running after \(timeout)", upid: upid)
            }
            try await Task.sleep(for: min(interval, deadline - clock.now))
            interval = min(interval * 2, maxInterval)
        }
    }
}
