import Foundation

/// Group commit: writes that arrive while a batch is committing wait for it and then go together
/// in the next one, so many reports share one commit (one WAL flush or fsync) instead of one each.
///
/// A caller is answered only after its own batch has committed, so nothing acknowledged can be
/// lost. If a batch fails and `retryAlone` says the failure left nothing stored (SQLite: always,
/// its transaction rolled back; PostgreSQL: only when the server refused the statement, never
/// after a lost connection, whose commit may have happened), its items are retried one by one so
/// one bad write cannot fail its neighbours; otherwise every caller of the batch gets the error.
/// With a `key`, a batch holds each key at most once (a later item of the same key
/// waits for the next batch, in arrival order): a batch can then be one set-based statement that
/// touches each row once. Used for report ingest: on SQLite (one connection, one lane) and on
/// PostgreSQL (several lanes, see ``GroupCommitLanes``).
actor GroupCommit<Item: Sendable, Output: Sendable> {
    /// Writes a whole batch, committed when it returns, and answers one output per item, in order.
    typealias BatchBody = @Sendable ([Item]) async throws -> [Output]

    let maxBatch: Int
    let body: BatchBody
    let key: (@Sendable (Item) -> String)?
    let retryAlone: @Sendable (any Error) -> Bool
    private var pending: [(item: Item, done: CheckedContinuation<Output, any Error>)] = []
    private var draining = false

    init(
        maxBatch: Int = 256, key: (@Sendable (Item) -> String)? = nil, retryAlone: @escaping @Sendable (any Error) -> Bool = { _ in true },
        batch: @escaping BatchBody
    ) {
        self.maxBatch = maxBatch
        self.key = key
        self.retryAlone = retryAlone
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

    /// The next batch: the oldest items, at most `maxBatch`, each key at most once.
    private func takeBatch() -> [(item: Item, done: CheckedContinuation<Output, any Error>)] {
        guard let key else {
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            return batch
        }
        var seen = Set<String>()
        var batch: [(item: Item, done: CheckedContinuation<Output, any Error>)] = []
        var rest: [(item: Item, done: CheckedContinuation<Output, any Error>)] = []
        for p in pending {
            if batch.count < maxBatch, seen.insert(key(p.item)).inserted {
                batch.append(p)
            } else {
                rest.append(p)
            }
        }
        pending = rest
        return batch
    }

    private func drain() async {
        while !pending.isEmpty {
            let batch = takeBatch()
            let body = self.body
            do {
                let outputs = try await body(batch.map(\.item))
                guard outputs.count == batch.count else {
                    throw StoreError(code: .unavailable, message: "a batch answered \(outputs.count) of \(batch.count)")
                }
                for (b, o) in zip(batch, outputs) { b.done.resume(returning: o) }
            } catch {
                guard retryAlone(error) else {
                    for item in batch { item.done.resume(throwing: error) }
                    continue
                }
                for item in batch {
                    do {
                        let one = try await body([item.item])
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

/// Several group commits side by side, an item's lane chosen by its key (a stable hash), so the
/// lanes' batches never touch the same rows (no lock waits or deadlocks between them) and a key's
/// items keep their order. PostgreSQL commits the lanes' batches concurrently on the pool's
/// connections; each batch is one commit.
struct GroupCommitLanes<Item: Sendable, Output: Sendable>: Sendable {
    let lanes: [GroupCommit<Item, Output>]
    let key: @Sendable (Item) -> String

    init(
        lanes count: Int, maxBatch: Int = 256, key: @escaping @Sendable (Item) -> String,
        retryAlone: @escaping @Sendable (any Error) -> Bool = { _ in true }, batch: @escaping GroupCommit<Item, Output>.BatchBody
    ) {
        self.key = key
        self.lanes = (0..<max(1, count)).map { _ in GroupCommit(maxBatch: maxBatch, key: key, retryAlone: retryAlone, batch: batch) }
    }

    func submit(_ item: Item) async throws -> Output {
        try await lanes[Self.lane(of: key(item), count: lanes.count)].submit(item)
    }

    /// FNV-1a of the key's UTF-8 bytes: the same lane for a key in every process and run.
    static func lane(of key: String, count: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return Int(h % UInt64(count))
    }
}
