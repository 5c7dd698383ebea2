import FelhomCore
import Foundation
import PVESimulator
import Testing

/// Every simulator answer checked against the return schema of pve-docs' apidata.js (a copy of the
/// covered endpoints lives in Fixtures/pve-schema-subset.json, made by scripts/dev/extract-pve-schema.py).
///
/// The check follows what real PVE sends, which is looser than its schema in documented ways
/// (PVE-FACTS §1.4, §2.0): `number` fields may be numeric strings (cpulimit), booleans are 0/1.
@Suite struct SchemaConformanceTests {
    static let schema: [String: JSONValue] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pve-schema-subset.json")
        return (try? JSONValue.parse(Data(contentsOf: url)))?.objectValue ?? [:]
    }()

    /// Problems of `value` against `schema`, each with its JSON path.
    static func violations(_ value: JSONValue, _ schema: JSONValue, _ path: String = "$") -> [String] {
        guard let type = schema["type"]?.stringValue else { return [] }
        var out: [String] = []
        switch (type, value) {
        case ("null", .null): break
        case ("string", .string(let s)):
            if let e = schema["enum"]?.arrayValue?.compactMap(\.stringValue), !e.contains(s) { out.append("\(path): '\(s)' not in \(e)") }
        case ("integer", .int): break
        case ("number", .int), ("number", .double): break
        case ("number", .string(let s)) where Double(s) != nil: break  // PVE prints config numbers as strings
        case ("boolean", .int(let i)) where i == 0 || i == 1: break
        case ("boolean", .bool): break
        case ("array", .array(let items)):
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() { out += violations(item, itemSchema, "\(path)[\(i)]") }
            }
        case ("object", .object(let o)):
            let props = schema["properties"]?.objectValue ?? [:]
            for (k, p) in props where !k.hasSuffix("[n]") && !(p["optional"]?.lenientBool ?? false) && o[k] == nil {
                out.append("\(path).\(k): required but missing")
            }
            for (k, v) in o {
                let base = k.prefix { !$0.isNumber }
                guard let p = props[k] ?? (base.count < k.count ? props["\(base)[n]"] : nil) else { continue }
                out += violations(v, p, "\(path).\(k)")
            }
        default:
            out.append("\(path): expected \(type), got \(value.serializedString().prefix(60))")
        }
        return out
    }

    @Test func theValidatorCatchesWrongShapes() {
        let s: JSONValue = ["type": "object", "properties": ["a": ["type": "integer"], "b": ["type": "string", "optional": 1]]]
        #expect(Self.violations(["a": 1], s).isEmpty)
        #expect(Self.violations(["a": "1"], s) == ["$.a: expected integer, got \"1\""])
        #expect(Self.violations(["b": "x"], s) == ["$.a: required but missing"])
    }

    @Test func everyCoveredEndpointAnswersPerItsReturnSchema() async throws {
        #expect(Self.schema.count == 36)
        let h = EngineHarness(taskSeconds: 1)
        var checked: Set<String> = []
        func check(_ key: String, _ path: String, query: String = "", form: String? = nil, token: String = SimSeed.rootTokenID) async -> JSONValue? {
            let method = String(key.split(separator: " ")[0])
            let a = await h.call(method, path, token: token, query: query, form: form)
            #expect(a.status == 200, "\(key) \(path): HTTP \(a.status) \(a.reason)")
            guard let data = a.data, let returns = Self.schema[key]?["returns"] else {
                Issue.record("\(key): no data or no schema")
                return nil
            }
            let v = Self.violations(data, returns)
            #expect(v.isEmpty, "\(key): \(v)")
            checked.insert(key)
            return data
        }
        func settle() { h.clock.advance(by: 2) }
        let enc = { (s: String) in s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s }

        _ = await check("GET /version", "/version")
        _ = await check("GET /nodes", "/nodes")
        _ = await check("GET /nodes/{node}/status", "/nodes/pve1/status")
        _ = await check("GET /nodes/{node}/lxc", "/nodes/pve1/lxc")
        _ = await check("GET /nodes/{node}/lxc/{vmid}/status/current", "/nodes/pve1/lxc/100/status/current")
        _ = await check("GET /nodes/{node}/lxc/{vmid}/config", "/nodes/pve1/lxc/100/config")
        _ = await check("PUT /nodes/{node}/lxc/{vmid}/config", "/nodes/pve1/lxc/100/config", form: "cpulimit=1.5&features=nesting%3D1")
        _ = await check("GET /nodes/{node}/lxc/{vmid}/config", "/nodes/pve1/lxc/100/config", query: "current=1")
        _ = await check("GET /nodes/{node}/lxc/{vmid}/pending", "/nodes/pve1/lxc/100/pending")
        _ = await check(
            "POST /nodes/{node}/lxc", "/nodes/pve1/lxc", form: "vmid=130&restore=1&storage=local-lvm&ostemplate=\(enc(SimSeed.goldenTemplateVolid))")
        settle()
        _ = await check("POST /nodes/{node}/lxc/{vmid}/status/start", "/nodes/pve1/lxc/101/status/start")
        settle()
        _ = await check("POST /nodes/{node}/lxc/{vmid}/status/reboot", "/nodes/pve1/lxc/101/status/reboot")
        settle()
        _ = await check("POST /nodes/{node}/lxc/{vmid}/status/shutdown", "/nodes/pve1/lxc/101/status/shutdown", form: "timeout=10")
        settle()
        _ = await check("POST /nodes/{node}/lxc/{vmid}/status/start", "/nodes/pve1/lxc/101/status/start")
        settle()
        _ = await check("POST /nodes/{node}/lxc/{vmid}/status/stop", "/nodes/pve1/lxc/101/status/stop")
        settle()
        _ = await check("POST /nodes/{node}/lxc/{vmid}/snapshot", "/nodes/pve1/lxc/101/snapshot", form: "snapname=s1&description=x")
        settle()
        _ = await check("GET /nodes/{node}/lxc/{vmid}/snapshot", "/nodes/pve1/lxc/101/snapshot")
        _ = await check("GET /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/config", "/nodes/pve1/lxc/101/snapshot/s1/config")
        _ = await check("POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback", "/nodes/pve1/lxc/101/snapshot/s1/rollback")
        settle()
        _ = await check("DELETE /nodes/{node}/lxc/{vmid}/snapshot/{snapname}", "/nodes/pve1/lxc/101/snapshot/s1")
        settle()
        let upid = await check(
            "POST /nodes/{node}/vzdump", "/nodes/pve1/vzdump", form: "vmid=101&storage=local&compress=zstd&notes-template=%7B%7Bguestname%7D%7D")
        _ = await check("GET /nodes/{node}/tasks", "/nodes/pve1/tasks", query: "source=all")
        let u = enc(upid?.stringValue ?? "")
        _ = await check("GET /nodes/{node}/tasks/{upid}/status", "/nodes/pve1/tasks/\(u)/status")
        _ = await check("GET /nodes/{node}/tasks/{upid}/log", "/nodes/pve1/tasks/\(u)/log")
        _ = await check("DELETE /nodes/{node}/tasks/{upid}", "/nodes/pve1/tasks/\(u)")
        settle()
        _ = await check("DELETE /nodes/{node}/lxc/{vmid}", "/nodes/pve1/lxc/130", query: "purge=1")
        settle()
        _ = await check("GET /storage", "/storage")
        _ = await check("GET /storage/{storage}", "/storage/pbs-felhom")
        _ = await check("PUT /storage/{storage}", "/storage/pbs-felhom", form: "encryption-key=autogen")
        _ = await check("POST /storage", "/storage", form: "storage=usb&type=dir&path=/mnt/usb&content=backup")
        _ = await check("GET /nodes/{node}/storage", "/nodes/pve1/storage")
        _ = await check("DELETE /storage/{storage}", "/storage/usb")
        _ = await check("GET /nodes/{node}/storage/{storage}/status", "/nodes/pve1/storage/local/status")
        _ = await check("GET /nodes/{node}/storage/{storage}/content", "/nodes/pve1/storage/pbs-felhom/content")
        _ = await check("GET /nodes/{node}/storage/{storage}/content", "/nodes/pve1/storage/local/content")
        _ = await check(
            "GET /nodes/{node}/storage/{storage}/content/{volume}", "/nodes/pve1/storage/local/content/\(enc(SimSeed.goldenTemplateVolid))")
        _ = await check("GET /nodes/{node}/lxc/{vmid}/interfaces", "/nodes/pve1/lxc/100/interfaces")
        _ = await check("GET /cluster/nextid", "/cluster/nextid")
        _ = await check("GET /access/permissions", "/access/permissions")
        #expect(checked == Set(Self.schema.keys), "not exercised: \(Set(Self.schema.keys).subtracting(checked).sorted())")
    }
}
