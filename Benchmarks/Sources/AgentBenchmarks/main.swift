// Reconcile plan time for 10 / 100 / 1,000 / 10,000 guests and per-guest queue throughput.
// Run: scripts/bench agent (release build). Figures: docs/performance.md.
import Benchmark
import FelhomAgent
import FelhomCore
import Foundation

/// A host where a third of the guests are in sync, a third differ in memory and run state, and a
/// third are missing (to provision).
func world(_ n: Int) -> (DesiredState, [ObservedGuest]) {
    var desired: [DesiredState.Guest] = []
    var actual: [ObservedGuest] = []
    for i in 0..<n {
        let vmid = 100 + i
        let g = DesiredState.Guest(vmid: vmid, name: "g\(i)", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .running, description: "guest \(i)")
        desired.append(g)
        switch i % 3 {
        case 0: actual.append(ObservedGuest(vmid: vmid, name: g.name, status: .running,
                                             config: ObservedConfig(cores: 1, cpuunits: 100, memory: 1024, description: "guest \(i)\n")))
        case 1: actual.append(ObservedGuest(vmid: vmid, name: g.name, status: .stopped,
                                             config: ObservedConfig(cores: 1, cpuunits: 100, memory: 512, description: "guest \(i)\n")))
        default: break
        }
    }
    return (DesiredState(guests: desired.shuffled()), actual.shuffled())
}

for n in [10, 100, 1_000, 10_000] {
    let (d, a) = world(n)
    benchmark("plan \(n) guests") {
        let plan = Plan.make(desired: d, actual: a)
        precondition(!plan.isEmpty)
    }
}

let queue = GuestQueue()
benchmark("queue: 1,000 no-op jobs over 50 guests") {
    let sem = DispatchSemaphore(value: 0)
    Task {
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<1_000 {
                group.addTask { _ = try? await queue.run(vmid: i % 50) { i } }
            }
        }
        sem.signal()
    }
    sem.wait()
}

Benchmark.main()
