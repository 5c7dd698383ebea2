import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A simulated Proxmox Backup Server datastore that several simulated hosts can share, as boxes
/// share one PBS in production: each host's `pbs` storage with this `datastore` name sees only
/// the snapshots of its own `namespace` (`customers/box-1`), and a second host configured with
/// another box's namespace (a disaster-recovery drill) sees that box's backups.
///
/// Snapshots are kept by namespace and path (`backup/ct/VMID/TIME`); an engine maps them to its
/// own storage id (`pbs-felhom:backup/ct/…`). Changes merge by path, so two hosts backing up at
/// the same time lose nothing. **Prune jobs** model PBS's own retention: a job per namespace keeps
/// the newest `keepLast` snapshots per guest (protected ones are never pruned); the box's token
/// cannot prune, so retention is only ever the datastore's job.
///
/// With a `path`, the datastore lives in a JSON file (written atomically, under an exclusive
/// `flock` on `PATH.lock`), so separate simulator processes share it too.
public final class SimPBSDatastore: Sendable {
    /// One snapshot in the datastore.
    public struct Snapshot: Codable, Sendable {
        public var namespace: String
        /// `backup/ct/VMID/TIME`.
        public var path: String
        public var volume: SimVolume
        public init(namespace: String, path: String, volume: SimVolume) {
            self.namespace = namespace
            self.path = path
            self.volume = volume
        }
    }

    /// A prune job on one namespace (PBS: Datastore → Prune & GC → prune job with `ns` and `keep-last`).
    public struct PruneJob: Codable, Sendable, Equatable {
        public var namespace: String
        public var keepLast: Int
        public init(namespace: String, keepLast: Int) {
            self.namespace = namespace
            self.keepLast = keepLast
        }
    }

    struct Contents: Codable {
        var snapshots: [Snapshot] = []
        var pruneJobs: [PruneJob] = []
    }

    /// The datastore's name (a PVE `pbs` storage's `datastore`).
    public let name: String
    let path: URL?
    let contents = Mutex(Contents())

    public init(name: String, path: URL? = nil) {
        self.name = name
        self.path = path
        if let path, let data = try? Data(contentsOf: path), let loaded = try? JSONDecoder().decode(Contents.self, from: data) {
            contents.withLock { $0 = loaded }
        }
    }

    /// The snapshots of `namespace`.
    public func snapshots(namespace: String) -> [Snapshot] {
        access { $0.snapshots.filter { $0.namespace == namespace } }
    }

    /// Every snapshot (all namespaces).
    public var allSnapshots: [Snapshot] { access { $0.snapshots } }

    /// Applies one host's changes to `namespace`: snapshots added or changed (by path) and paths removed.
    public func apply(namespace: String, upserts: [Snapshot], removals: Set<String>) {
        guard !upserts.isEmpty || !removals.isEmpty else { return }
        access(write: true) { c in
            c.snapshots.removeAll { $0.namespace == namespace && removals.contains($0.path) }
            for s in upserts {
                if let i = c.snapshots.firstIndex(where: { $0.namespace == namespace && $0.path == s.path }) {
                    c.snapshots[i] = s
                } else {
                    c.snapshots.append(s)
                }
            }
        }
    }

    /// Adds (or replaces) the prune job of `job.namespace`.
    public func setPruneJob(_ job: PruneJob) {
        access(write: true) { c in
            c.pruneJobs.removeAll { $0.namespace == job.namespace }
            c.pruneJobs.append(job)
        }
    }

    /// Runs every prune job as PBS would: per namespace and guest, the newest `keepLast`
    /// snapshots stay (protected ones always stay). Returns the paths removed, by namespace.
    @discardableResult
    public func runPruneJobs() -> [String: [String]] {
        access(write: true) { c in
            var removed: [String: [String]] = [:]
            for job in c.pruneJobs {
                let mine = c.snapshots.filter { $0.namespace == job.namespace && !$0.volume.protected }
                for vmid in Set(mine.compactMap(\.volume.vmid)) {
                    let older = mine.filter { $0.volume.vmid == vmid }.sorted { ($0.volume.ctime, $0.path) > ($1.volume.ctime, $1.path) }
                        .dropFirst(max(1, job.keepLast))
                    let paths = Set(older.map(\.path))
                    c.snapshots.removeAll { $0.namespace == job.namespace && paths.contains($0.path) }
                    removed[job.namespace, default: []] += paths.sorted()
                }
            }
            return removed
        }
    }

    /// Reads (and with `write`, changes and saves) the contents; with a file, under its lock and
    /// after reloading it, so other processes' changes are seen and kept.
    func access<T>(write: Bool = false, _ body: (inout Contents) -> T) -> T {
        contents.withLock { c in
            guard let path else { return body(&c) }
            let lock = open(path.path + ".lock", O_CREAT | O_RDWR, 0o600)
            if lock >= 0 { flock(lock, LOCK_EX) }
            defer {
                if lock >= 0 {
                    flock(lock, LOCK_UN)
                    close(lock)
                }
            }
            if let data = try? Data(contentsOf: path), let loaded = try? JSONDecoder().decode(Contents.self, from: data) { c = loaded }
            let result = body(&c)
            if write, let data = try? JSONEncoder().encode(c) { try? data.write(to: path, options: .atomic) }
            return result
        }
    }
}
