import FelhomCore
import Foundation
import Synchronization
import Testing

@testable import Proxmox

/// A transport that answers from a script, so waitTask's polling logic is tested through the real client.
final class ScriptedTransport: HTTPTransport {
    let handler: @Sendable (HTTPRequestSpec, Int) -> HTTPResponseSpec
    let calls = Mutex<[String]>([])

    init(_ handler: @escaping @Sendable (HTTPRequestSpec, Int) -> HTTPResponseSpec) { self.handler = handler }

    func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
        let n = calls.withLock {
            $0.append("\(request.method) \(request.target)")
            return $0.count
        }
        return handler(request, n)
    }
}

func ok(_ json: String) -> HTTPResponseSpec { HTTPResponseSpec(status: 200, reason: "OK", body: Data(json.utf8)) }

let upidText = "UPID:pve1:00001234:00000001:65F0A1B2:vzstart:101:felhom@pve!agent:"

func taskJSON(_ status: String, _ exit: String?) -> String {
    let e = exit.map { #","exitstatus":"\#($0)""# } ?? ""
    return
        #"{"data":{"upid":"\#(upidText)","node":"pve1","pid":4660,"pstart":1,"starttime":1710268850,"type":"vzstart","id":"101","user":"felhom@pve","tokenid":"agent","status":"\#(status)"\#(e)}}"#
}

@Suite struct WaitTaskTests {
    func client(_ t: ScriptedTransport) throws -> PVEClient {
        PVEClient(
            connection: try PVEConnection(host: "pve1", tokenID: "felhom@pve!agent", tokenSecret: Secret("s"), trust: .systemDefault),
            transport: t)
    }

    @Test func pollsUntilStoppedAndAcceptsWarnings() async throws {
        let t = ScriptedTransport { _, n in ok(taskJSON(n < 3 ? "running" : "stopped", n < 3 ? nil : "WARNINGS: 2")) }
        let s = try await client(t).waitTask(try UPID(parsing: upidText), initialInterval: .milliseconds(1))
        #expect(s.warningCount == 2)
        #expect(t.calls.withLock { $0.count } == 3)
        #expect(t.calls.withLock { $0[0] }.contains("/api2/json/nodes/pve1/tasks/UPID%3Apve1%3A00001234"))
    }

    @Test func retriesATaskThatIsBrieflyInvisible() async throws {
        let t = ScriptedTransport { _, n in
            n == 1
                ? HTTPResponseSpec(
                    status: 400, reason: "Parameter verification failed.", body: Data(#"{"data":null,"errors":{"upid":"no such task"}}"#.utf8))
                : ok(taskJSON("stopped", "OK"))
        }
        let s = try await client(t).waitTask(try UPID(parsing: upidText), initialInterval: .milliseconds(1))
        #expect(s.succeeded)
    }

    @Test func failedTaskCarriesExitStatusAndLogTail() async throws {
        let t = ScriptedTransport { req, _ in
            if req.target.contains("/log") {
                return ok(#"{"data":[{"n":1,"t":"starting"},{"n":2,"t":"TASK ERROR: CT is locked (backup)"}],"total":2}"#)
            }
            return ok(taskJSON("stopped", "CT is locked (backup)"))
        }
        let e = await #expect(throws: PVEError.self) {
            try await client(t).waitTask(try UPID(parsing: upidText), initialInterval: .milliseconds(1))
        }
        #expect(e?.code == .taskFailed)
        #expect(e?.exitStatus == "CT is locked (backup)")
        #expect(e?.lock == "backup")
        #expect(e?.logTail.last == "TASK ERROR: CT is locked (backup)")
    }

    @Test func permissionFailureInsideTheTaskIsParsed() async throws {
        let t = ScriptedTransport { req, _ in
            req.target.contains("/log")
                ? ok(#"{"data":[],"total":0}"#)
                : ok(taskJSON("stopped", "Permission check failed (/vms/101, VM.Backup)"))
        }
        let e = await #expect(throws: PVEError.self) {
            try await client(t).waitTask(try UPID(parsing: upidText), initialInterval: .milliseconds(1))
        }
        #expect(e?.privilege == "VM.Backup")
        #expect(e?.path == "/vms/101")
    }

    @Test func timesOut() async throws {
        let t = ScriptedTransport { _, _ in ok(taskJSON("running", nil)) }
        let e = await #expect(throws: PVEError.self) {
            try await client(t).waitTask(
                try UPID(parsing: upidText), timeout: .milliseconds(50), initialInterval: .milliseconds(5), maxInterval: .milliseconds(10))
        }
        #expect(e?.code == .timeout)
    }

    @Test func stopsWhenCancelled() async throws {
        let t = ScriptedTransport { _, _ in ok(taskJSON("running", nil)) }
        let c = try client(t)
        let task = Task { try await c.waitTask(try UPID(parsing: upidText), initialInterval: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(60))
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
    }

    @Test func vzdumpOKMeansNothingToDo() async throws {
        let t = ScriptedTransport { _, _ in ok(#"{"data":"OK"}"#) }
        let r = try await client(t).vzdump(node: "pve1", VzdumpOptions(vmids: [555], storage: "local"))
        #expect(r == .nothingToDo)
    }

    @Test func configUpdateIsSynchronousNull() async throws {
        let t = ScriptedTransport { req, _ in
            #expect(req.method == "PUT")
            #expect(String(decoding: req.body ?? Data(), as: UTF8.self) == "description=a%20b&memory=512&digest=abc")
            return ok(#"{"data":null}"#)
        }
        try await client(t).updateContainerConfig(
            node: "pve1", vmid: 100, ContainerConfigUpdate(set: ["memory": "512", "description": "a b"], digest: "abc"))
        #expect(t.calls.withLock { $0.count } == 1)
    }

    @Test func deleteParametersGoInTheQuery() async throws {
        let t = ScriptedTransport { req, _ in
            #expect(req.body == nil)
            #expect(req.target.hasSuffix("/api2/json/nodes/pve1/lxc/100?purge=1&force=1"))
            return ok(#"{"data":"\#(upidText)"}"#)
        }
        _ = try await client(t).destroyContainer(node: "pve1", vmid: 100, purge: true, force: true)
    }
}

/// A transport whose first `failures` sends break at the connection.
final class FlakyTransport: HTTPTransport {
    let failures: Int
    let calls = Mutex<[String]>([])
    init(failures: Int) { self.failures = failures }
    func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec {
        let n = calls.withLock {
            $0.append("\(request.method) \(request.target)")
            return $0.count
        }
        if n <= failures { throw HTTPClientError(code: .transport, message: "I/O on closed channel") }
        return ok(#"{"data":"UPID:pve1:00001234:00000001:65F0A1B2:vzstart:101:felhom@pve!agent:"}"#)
    }
}

@Suite struct TransportRetryTests {
    func client(_ t: FlakyTransport) throws -> PVEClient {
        PVEClient(
            connection: try PVEConnection(host: "pve1", tokenID: "felhom@pve!agent", tokenSecret: Secret("s"), trust: .systemDefault),
            transport: t)
    }

    @Test func aReadThatBrokeAtTheConnectionIsAskedAgainTwice() async throws {
        let twice = FlakyTransport(failures: 2)
        _ = try await client(twice).request("GET", "/nodes/pve1/storage")
        #expect(twice.calls.withLock { $0.count } == 3)
        let thrice = FlakyTransport(failures: 3)
        await #expect(throws: PVEError.self) { _ = try await client(thrice).request("GET", "/nodes/pve1/storage") }
        #expect(thrice.calls.withLock { $0.count } == 3, "two retries, no more")
    }

    @Test func aWriteIsNeverAskedAgain() async throws {
        let t = FlakyTransport(failures: 1)
        await #expect(throws: PVEError.self) { _ = try await client(t).startContainer(node: "pve1", vmid: 101) }
        #expect(t.calls.withLock { $0 } == ["POST /api2/json/nodes/pve1/lxc/101/status/start"], "it may have happened")
    }
}
