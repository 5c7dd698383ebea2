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
    /// Writes a whole batch inside its transaction and answers one output per item, in order
    /// (so statements can be shared by the batch: one multi-row insert instead of one each).
    typealias BatchBody = @Sendable (any SQLDatabase, [Item]) async throws -> [Output]

    let store: HubStore
    let maxBatch: Int
    let body: BatchBody
    private var pending: [(item: Item, done: CheckedContinuation<Output, any Error>)] = []
    private var draining = false

    init(store: HubStore, maxBatch: Int = 256, body: @escaping Body) {
        self.init(store: store, maxBatch: maxBatch) { (db: any SQLDatabase, items: [Item]) in
            var out: [Output] = []
            for item in items { out.append(try await body(db, item)) }
            return out
        }
    }

    init(store: HubStore, maxBatch: Int = 256, batch: @escaping BatchBody) {
        self.store = store
        self.maxBatch = maxBatch
        self.body = batch
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
                let outputs = try await store.transaction { db in try await body(db, items) }
                guard outputs.count == batch.count else {
                    throw StoreError(code: .unavailable, message: "a batch answered \(outputs.count) of \(batch.count)")
                }
                for (b, o) in zip(batch, outputs) { b.done.resume(returning: o) }
            } catch {
                for item in batch {
                    do {
                        let one = try await store.transaction { db in try await body(db, [item.item]) }
                        guard let output = one.first else { throw StoreError(code: .unavailable, message: "a write answered nothing") }
                        item.done.resume(returning: output)
                    } catch {
                        item.done.resume(throwing: error)
                    }
                }
            }
        }
        draining = false
    }
}
