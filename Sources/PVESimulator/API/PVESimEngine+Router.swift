import FelhomCore
import Foundation

/// Validated parameters of one call, with typed reads.
struct Params {
    var values: [String: JSONValue]

    func str(_ k: String) -> String? { values[k].map(ParamValidator.text) }
    func int(_ k: String) -> Int? { str(k).flatMap { Int($0.hasPrefix("+") ? String($0.dropFirst()) : $0) } }
    func bool(_ k: String) -> Bool? {
        switch values[k] {
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .string(let s): return s == "1"
        default: return nil
        }
    }
    func has(_ k: String) -> Bool { values[k] != nil }
}

extension PVESimEngine {
    /// Finds the endpoint, merges path parameters, validates against the schema and dispatches.
    func route(method: String, path: String, params body: [String: JSONValue], authid: String) throws -> Result {
        let segs = path.split(separator: "/", omittingEmptySubsequences: true).map {
            String($0).removingPercentEncoding ?? String($0)
        }
        var matched: (key: String, pathParams: [String: String])?
        for key in ParamValidator.endpoints.keys {
            let parts = key.split(separator: " ", maxSplits: 1)
            guard parts[0] == method else { continue }
            let pat = parts[1].split(separator: "/").map(String.init)
            guard pat.count == segs.count else { continue }
            var pp: [String: String] = [:]
            var ok = true
            for (p, s) in zip(pat, segs) {
                if p.hasPrefix("{") {
                    pp[String(p.dropFirst().dropLast())] = s
                } else if p != s {
                    ok = false
                    break
                }
            }
            if ok {
                matched = (key, pp)
                break
            }
        }
        guard let (key, pathParams) = matched else {
            throw SimError(status: 501, message: "Method '\(method) \(path)' not implemented")
        }
        var all = body
        for (k, v) in pathParams {
            if let existing = all[k], ParamValidator.text(existing) != v {
                throw SimError.param([k: "duplicate parameter (already defined in URI) with conflicting values!"])
            }
            all[k] = .string(v)
        }
        let endpoint = ParamValidator.endpoints[key] ?? .null
        let errors = ParamValidator.validate(all, schema: endpoint["parameters"] ?? .null)
        if !errors.isEmpty { throw SimError.param(errors) }
        let p = Params(values: all)
        if let n = p.str("node") { _ = try node(n) }

        switch key {
        case "GET /version": return try getVersion(authid)
        case "GET /nodes": return try getNodes(authid)
        case "GET /nodes/{node}/status": return try getNodeStatus(p, authid)
        case "GET /nodes/{node}/lxc": return try listContainers(p, authid)
        case "POST /nodes/{node}/lxc": return try createContainer(p, authid, path: path)
        case "GET /nodes/{node}/lxc/{vmid}/status/current": return try containerStatus(p, authid)
        case "GET /nodes/{node}/lxc/{vmid}/interfaces": return try interfaces(p, authid)
        case "GET /nodes/{node}/lxc/{vmid}/config": return try getConfig(p, authid)
        case "PUT /nodes/{node}/lxc/{vmid}/config": return try putConfig(p, authid)
        case "GET /nodes/{node}/lxc/{vmid}/pending": return try getPending(p, authid)
        case "POST /nodes/{node}/lxc/{vmid}/status/start": return try power(p, authid, action: "start", path: path)
        case "POST /nodes/{node}/lxc/{vmid}/status/stop": return try power(p, authid, action: "stop", path: path)
        case "POST /nodes/{node}/lxc/{vmid}/status/shutdown": return try power(p, authid, action: "shutdown", path: path)
        case "POST /nodes/{node}/lxc/{vmid}/status/reboot": return try power(p, authid, action: "reboot", path: path)
        case "DELETE /nodes/{node}/lxc/{vmid}": return try destroyContainer(p, authid, path: path)
        case "GET /nodes/{node}/lxc/{vmid}/snapshot": return try listSnapshots(p, authid)
        case "POST /nodes/{node}/lxc/{vmid}/snapshot": return try createSnapshot(p, authid, path: path)
        case "DELETE /nodes/{node}/lxc/{vmid}/snapshot/{snapname}": return try deleteSnapshot(p, authid, path: path)
        case "POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback": return try rollback(p, authid, path: path)
        case "GET /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config": return try snapshotConfig(p, authid)
        case "POST /nodes/{node}/vzdump": return try vzdump(p, authid, path: path)
        case "GET /nodes/{node}/tasks": return try listTasks(p, authid)
        case "GET /nodes/{node}/tasks/{upid}/status": return try taskStatus(p, authid)
        case "GET /nodes/{node}/tasks/{upid}/log": return try taskLog(p, authid)
        case "DELETE /nodes/{node}/tasks/{upid}": return try stopTask(p, authid)
        case "GET /storage": return try listStorageConfig(p, authid)
        case "GET /storage/{storage}": return try getStorageConfig(p, authid)
        case "PUT /storage/{storage}": return try putStorageConfig(p, authid)
        case "POST /storage": return try createStorage(p, authid)
        case "DELETE /storage/{storage}": return try deleteStorage(p, authid)
        case "GET /nodes/{node}/storage": return try listNodeStorage(p, authid)
        case "GET /nodes/{node}/storage/{storage}/status": return try nodeStorageStatus(p, authid)
        case "GET /nodes/{node}/storage/{storage}/content": return try storageContent(p, authid)
        case "GET /nodes/{node}/storage/{storage}/content/{volume}": return try volumeInfo(p, authid)
        case "GET /cluster/nextid": return try nextID(p)
        case "GET /access/permissions": return try permissions(p, authid)
        default: throw SimError(status: 501, message: "Method '\(method) \(path)' not implemented")
        }
    }
}
