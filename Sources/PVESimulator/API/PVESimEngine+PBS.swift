import Foundation

/// Keeping the backups of `pbs` storages in a shared ``SimPBSDatastore``: read into the state at
/// the start of every call (``advance()``), this host's changes written back at every
/// ``persist()``, merged by snapshot path.
extension PVESimEngine {
    /// This host's `pbs` storages that live in the shared datastore.
    var boundPBSStorages: [SimStorage] {
        guard let pbs = sharedPBS else { return [] }
        return state.storages.filter { $0.type == "pbs" && $0.datastore == pbs.name }
    }

    /// `STORAGE:backup/ct/…` → `backup/ct/…`.
    static func pbsPath(_ volid: String) -> String {
        volid.firstIndex(of: ":").map { String(volid[volid.index(after: $0)...]) } ?? volid
    }

    static func encoded(_ v: SimVolume) -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return (try? enc.encode(v)) ?? Data()
    }

    /// Replaces the bound storages' backups in the state with the datastore's, by namespace.
    func pullSharedPBS() {
        guard let pbs = sharedPBS else { return }
        if !seededPBS {
            // The seed's own backups go into the datastore once (the baseline is empty).
            seededPBS = true
            pushSharedPBS()
        }
        for s in boundPBSStorages {
            state.volumes.removeAll { $0.storage == s.id }
            var base: [String: Data] = [:]
            for snap in pbs.snapshots(namespace: s.namespace ?? "") {
                var v = snap.volume
                v.volid = "\(s.id):\(snap.path)"
                v.storage = s.id
                state.volumes.append(v)
                base[snap.path] = Self.encoded(v)
            }
            pulledPBS[s.id] = base
        }
    }

    /// Writes this host's changes to the bound storages since the last read to the datastore.
    func pushSharedPBS() {
        guard let pbs = sharedPBS else { return }
        for s in boundPBSStorages {
            let base = pulledPBS[s.id] ?? [:]
            var now: [String: Data] = [:]
            var upserts: [SimPBSDatastore.Snapshot] = []
            for v in state.volumes where v.storage == s.id {
                let path = Self.pbsPath(v.volid)
                let data = Self.encoded(v)
                now[path] = data
                if base[path] != data { upserts.append(.init(namespace: s.namespace ?? "", path: path, volume: v)) }
            }
            pbs.apply(namespace: s.namespace ?? "", upserts: upserts, removals: Set(base.keys).subtracting(now.keys))
            pulledPBS[s.id] = now
        }
    }
}
