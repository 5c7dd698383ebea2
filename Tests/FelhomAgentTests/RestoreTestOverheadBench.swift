import FelhomAgent
import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Testing

/// The restore test's own overhead, apart from PVE's task time (issue 14, docs/performance.md):
/// N restore tests against the simulator with every PVE task lasting exactly `T` seconds; the
/// overhead of a run is its wall time minus (tasks it started × T). Runs only with
/// `FELHOM_BENCH_RESTORE=N` (`scripts/bench-restore-test`): it measures, it does not assert speed.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["FELHOM_BENCH_RESTORE"] != nil))
struct RestoreTestOverheadBench {
    @Test func restoreTestOverheadExcludingPVETaskTime() async throws {
        let runs = Int(ProcessInfo.processInfo.environment["FELHOM_BENCH_RESTORE"] ?? "") ?? 5
        let taskSeconds = 0.5
        try await withSim(taskSeconds: taskSeconds) { h in
            await h.engine.setAppHealth(vmid: 100, json: #"[{"name":"photos","state":"running"}]"#)
            let c = try h.client()
            let up = try #require(try await c.vzdump(node: "pve1", VzdumpOptions(vmids: [100], storage: "pbs-felhom")).upid)
            _ = try await c.waitTask(up, initialInterval: .milliseconds(10))
            let journal = try Journal(path: NSTemporaryDirectory() + "felhom-rt-bench-\(UUID().uuidString).jsonl")
            let tester = RestoreTester(
                pve: c, node: "pve1", queue: GuestQueue(), journal: journal,
                backend: PrivilegedBackend(runner: SimCommandRunner(engine: h.engine)), healthTimeout: .seconds(60),
                taskTimeout: .seconds(60))
            var overheads: [Double] = []
            for i in 0..<runs {
                let before = await h.engine.snapshot().tasks.count
                let t0 = ContinuousClock.now
                let result = try await tester.run(vmid: 100, backupStorage: "pbs-felhom", id: "bench\(i)")
                let wall = ContinuousClock.now - t0
                let tasks = await h.engine.snapshot().tasks.count - before
                #expect(result.passed, "\(String(describing: result.reason))")
                let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
                overheads.append(seconds - Double(tasks) * taskSeconds)
                print(
                    String(
                        format: "restore test %d: wall %.3f s, %d PVE tasks × %.1f s, agent overhead %.3f s (restore %.2f s, healthy %.2f s)", i + 1,
                        seconds, tasks, taskSeconds, overheads.last ?? 0, result.restoreSeconds ?? -1, result.healthySeconds ?? -1))
            }
            let sorted = overheads.sorted()
            print(
                String(
                    format: "restore-test overhead over %d runs: median %.3f s, max %.3f s (PVE task time excluded)", runs,
                    sorted[sorted.count / 2], sorted.last ?? 0))
        }
    }
}
