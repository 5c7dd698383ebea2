import Foundation
import ServiceLifecycle
import Synchronization

/// A one-way latch: ``wait()`` returns once ``open()`` has been called (at once after that), or
/// throws `CancellationError` when its task is cancelled first.
final class Readiness: Sendable {
    private struct State {
        var open = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async throws {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.open || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
        guard state.withLock({ $0.open }) else { throw CancellationError() }
    }
}

extension HubStore {
    /// The store's lifetime as a service: on PostgreSQL it is the client's run loop (connections
    /// are made while it runs); on SQLite it waits. On graceful shutdown the store is closed — put
    /// it first in the service list so it stops after everything that uses it.
    public var service: any Service { StoreService(store: self) }
}

struct StoreService: Service {
    let store: HubStore

    func run() async throws {
        switch store.backend {
        case .postgres(let client):
            await client.run()  // returns on graceful shutdown or cancellation
        case .sqlite:
            try? await gracefulShutdown()
        }
        await store.close()
    }
}
