import Foundation
import SQLKit

/// Group commit: writes that arrive while a transaction is committing wait for it and then go
/// together in the next one, so many reports share one commit (one fsync) instead of one each.
///
/// A caller is answered only after its own transaction has committed, so nothing acknowledged can
/// be lost. If a batch fails, its items are retried one by one so one bad write cannot fail its
/// neighbours. Used for report ingest on SQLite, whose single connection serializes writers.
actor GroupCommit<Item: Sendable, Output: Sendable> {
    typealias Body = @Sendable (any SQLDatabase, Item) async throws -> Output

    let store: HubStore
    let maxBatch: Int
    let body: Body
    private var pending: [(item: Item, done: CheckedContinuation<Output, any Error>)] = []
    private var draining = false

    init(store: HubStore, maxBatch: Int = 256, body: @escaping Body) {
        self.store = store
        self.maxBatch = maxBatch
        self.body = body
    }

    func submit(_ item: Item) async throws -> Output {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Output, any Error>) in
            pending.append((item, c))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !pending.isEmpty {
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            let items = batch.map(\.item)
            let body = self.body
            do {
                let outputs = try await store.transaction { db in
                    var out: [Output] = []
                    for item in items { out.append(try await body(db, item)) }
                    return out
                }
                for (b, o) in zip(batch, outputs) { b.done.resume(returning: o) }
            } catch {
                for item in batch {
                    do { item.done.resume(returning: try await store.transaction { db in try await body(db, item.item) }) } catch {
                        item.done.resume(throwing: error)
                    }
                }
            }
        }
        draining = false
    }
}
