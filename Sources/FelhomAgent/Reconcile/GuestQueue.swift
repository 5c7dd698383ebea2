import Foundation
import Synchronization

/// The per-guest serializer every guest mutation passes through: work for the same vmid runs
/// strictly in submission order, work for different vmids runs in parallel. `drain()` waits for
/// everything submitted so far (used on shutdown).
public actor GuestQueue {
    private var tails: [Int: Task<Void, Never>] = [:]
    private var running = 0
    private var closed = false

    public init() {}

    /// Runs `work` after every earlier submission for `vmid` has finished; returns its result.
    public func run<T: Sendable>(vmid: Int, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        guard !closed else { throw CancellationError() }
        let previous = tails[vmid]
        let task = Task<T, Error> {
            await previous?.value
            return try await work()
        }
        let tail = Task<Void, Never> { _ = try? await task.value }
        tails[vmid] = tail
        running += 1
        defer {
            running -= 1
        }
        let result = await task.result
        if tails[vmid] == tail { tails[vmid] = nil }
        return try result.get()
    }

    /// Stops taking new work and waits for what was submitted.
    public func drain() async {
        closed = true
        for t in tails.values { await t.value }
    }

    /// Like ``drain()``, but waits at most `limit`; returns whether everything finished. What is
    /// still running then is journaled work: resumed or compensated at the next start.
    public func drain(upTo limit: Duration) async -> Bool {
        closed = true
        let waiting = Array(tails.values)
        // Unstructured on purpose: awaiting a task's value cannot be cancelled, so a task group would
        // wait for the slowest submission anyway. The first of the two to finish answers.
        let answered = Mutex(false)
        return await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            let answer: @Sendable (Bool) -> Void = { finished in
                if answered.withLock({ a in
                    defer { a = true }
                    return !a
                }) {
                    done.resume(returning: finished)
                }
            }
            Task {
                for t in waiting { await t.value }
                answer(true)
            }
            Task {
                try? await Task.sleep(for: limit)
                answer(false)
            }
        }
    }

    /// Submissions not yet finished (for tests and metrics).
    public var inFlight: Int { running }
}
