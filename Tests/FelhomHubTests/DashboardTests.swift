import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

extension TestClientProtocol {
    /// A browser-like request: optional session cookie, optional form body.
    func page(_ method: HTTPRequest.Method, _ uri: String, cookie: String? = nil, form: [String: String]? = nil) async throws
        -> (status: HTTPResponse.Status, html: String, headers: HTTPFields)
    {
        var headers = HTTPFields()
        if let cookie { headers[.cookie] = "\(Dashboard.cookieName)=\(cookie)" }
        var body: ByteBuffer?
        if let form {
            headers[.contentType] = "application/x-www-form-urlencoded"
            body = ByteBuffer(
                string: form.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&")
            )
        }
        return try await execute(uri: uri, method: method, headers: headers, body: body) { r in
            (r.status, String(buffer: r.body), r.headers)
        }
    }
}

@Suite struct DashboardTests {
    func signIn(_ client: some TestClientProtocol) async throws -> (cookie: String, csrf: String) {
        let r = try await client.page(.post, "/login", form: ["key": operatorKey])
        #expect(r.status == .seeOther)
        let setCookie = r.headers[.setCookie] ?? ""
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict"))
        let cookie = String(setCookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1])
        let home = try await client.page(.get, "/", cookie: cookie)
        let csrf = home.html.components(separatedBy: #"name="csrf" value=""#).dropFirst().first?.prefix(64) ?? ""
        return (cookie, String(csrf))
    }

    @Test(arguments: TestStores.kinds)
    func everyPageLoadsAndFormsAreProtected(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            // Signed out: every page sends you to the login form.
            for p in ["/", "/events", "/signed-ops", "/customers", "/hosts/x", "/hosts/x/desired"] {
                let r = try await client.page(.get, p)
                #expect(r.status == .seeOther && r.headers[.location] == "/login", "\(p)")
            }
            #expect(try await client.page(.get, "/login").html.contains(#"name="key""#))
            let wrong = try await client.page(.post, "/login", form: ["key": "not-the-key"])
            #expect(wrong.status == .unauthorized && wrong.html.contains("not accepted"))
            #expect(wrong.headers[.setCookie] == nil)

            // A small world: a customer whose name needs escaping, a host with a report, desired state, an op, events.
            let c = try await client.call(
                .post, "/api/v1/customers", key: operatorKey,
                body: #"{"name":"Kiss <b>Anna</b>","email":"a@example.hu","domain":"a.example.hu"}"#)
            let cid = c.json?["id"]?.stringValue ?? ""
            let host = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"nappali"}"#)
            let hid = host.json?["id"]?.stringValue ?? ""
            let hkey = host.json?["api_key"]?.stringValue ?? ""
            let protectedReport = sampleReport().replacingOccurrences(
                of: #""backups":[],"restore_tests":[]"#,
                with:
                    #""backups":[{"vmid":100,"last_success_at":"2026-11-23T02:00:41Z","volid":"pbs-felhom:backup/ct/100/2026-11-23T02:00:12Z","encrypted":"a9:ee:c8:02:13:5c:44:1b:90","verification":"ok","consistency":"app"}],"restore_tests":[{"vmid":100,"at":"2026-11-23T02:05:00Z","passed":true,"restore_seconds":41.2,"healthy_seconds":12.5}]"#
            )
            // A route the box reports unhealthy (its message is the backend's text: escaped on the page).
            let withRoutes =
                String(protectedReport.trimmingCharacters(in: .whitespacesAndNewlines).dropLast())
                + #","routes":[{"id":"web","listen_port":443,"state":"unhealthy","reason":"backend_does_not_expect_proxy_protocol","message":"answered <b>400</b>","checked_at":"2026-11-23T02:05:00Z","open_connections":2}],"volume_snapshots":[{"guest_vmid":100,"key":"mp0","volume_id":"local-lvm:vm-100-disk-1","state":"protected","last_snapshot_at":"2026-11-23T02:10:00Z"},{"guest_vmid":100,"key":"mp1","volume_id":"/mnt/<i>usb</i>","state":"not_protected","reason":"bind_mount"}]}"#
            #expect(try await client.call(.post, "/api/v1/host-report", key: hkey, body: withRoutes).status == .ok)
            _ = try await client.call(.post, "/api/v1/events", key: hkey, body: #"{"type":"backup_completed"}"#)
            _ = try await client.call(
                .post, "/api/v1/events", key: hkey, body: #"{"type":"restore_test_passed","data":{"vmid":100,"restore_seconds":41.2}}"#)
            _ = try await client.call(.put, "/api/v1/hosts/\(hid)/desired", key: operatorKey, body: sampleDesired)
            _ = try await client.call(.post, "/api/v1/hosts/\(hid)/desired/publish", key: operatorKey)
            // A release the gate reverted: the fleet shows the version the box runs and the failure.
            _ = try await client.call(
                .post, "/api/v1/events", key: hkey,
                body: #"{"type":"update_reverted","data":{"component":"agent","version":"0.3.0","reason":"0.3.0 did not report <b>healthy</b>"}}"#)
            // A quota lowered below what the customer uses: flagged on the customers page.
            _ = try await client.call(.put, "/api/v1/customers/\(cid)/quotas", key: operatorKey, body: #"{"max_guests":1}"#)
            _ = try await client.call(
                .post, "/api/v1/operator-keys", key: operatorKey,
                body: #"{"public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops"}"#)
            let queued = try await client.call(
                .post, "/api/v1/signed-ops", key: operatorKey, body: #"{"host_id":"\#(hid)","guest_id":"150","op":"guest.destroy"}"#)
            let opID = queued.json?["id"]?.stringValue ?? ""

            let (cookie, csrf) = try await signIn(client)
            #expect(csrf.count == 64)
            let expectations: [(String, [String])] = [
                (
                    "/",
                    [
                        "nappali", "Kiss &lt;b&gt;Anna&lt;/b&gt;", "pill ok\">alive", "ok ", ">1<", "<code>0.1.0</code>",
                        "title=\"0.3.0 did not report &lt;b&gt;healthy&lt;/b&gt;\">agent 0.3.0 reverted",
                    ]
                ),  // alive on its first report
                (
                    "/hosts/\(hid)",
                    [
                        "nappali", "in_sync", "missing", "backup_completed", "PVE 9.1.3", "title=\"", "Data protection", "Last verified restorable",
                        "time to restore, latest first: 41 s", "a9:ee:c8:02:13:5c:44:1b", ">app<", "pill ok\">passed", "restored in 41 s",
                        "<h2>Routes</h2>", "pill bad\">unhealthy", "backend_does_not_expect_proxy_protocol — answered &lt;b&gt;400&lt;/b&gt;",
                        "<h2>Volume snapshots</h2>", "pill ok\">protected", "pill bad\">not_protected", "/mnt/&lt;i&gt;usb&lt;/i&gt;",
                        "<h2>Capacity</h2>", "3072 of 31232 MiB", "2.50 vCPU used; capacity not reported yet", "<meter",
                    ]
                ),
                ("/hosts/\(hid)/desired", ["Published generation 1", "&quot;vmid&quot; : 101", "Save and publish"]),
                ("/events", ["backup_completed", "desired_published", "<option value=\"\(hid)\">nappali</option>"]),
                ("/events?type=backup_completed", ["backup_completed"]),
                ("/signed-ops", ["pending_signature", "DESTROY guest", "felhom sign", "/signed-ops/\(opID)/cancel"]),
                (
                    "/customers",
                    [
                        "Kiss &lt;b&gt;Anna&lt;/b&gt;", "a.example.hu", "nappali", "(default)", "guests 2 / 1 <span class=\"pill bad\">over",
                        "memory MiB 3072<br>",
                    ]
                ),
            ]
            for (path, needles) in expectations {
                let r = try await client.page(.get, path, cookie: cookie)
                #expect(r.status == .ok, "\(path)")
                #expect(r.headers[.contentType] == "text/html; charset=utf-8")
                for n in needles { #expect(r.html.contains(n), "\(path) should show \(n)") }
                #expect(!r.html.contains("<b>Anna</b>"), "\(path) must escape")
                #expect(!r.html.contains("<script"), "\(path) uses no JavaScript")
            }
            #expect(try await client.page(.get, "/events?type=node_down", cookie: cookie).html.contains("No events match"))
            #expect(try await client.page(.get, "/hosts/nope", cookie: cookie).status == .notFound)

            // Forms need the session's CSRF token.
            let forged = try await client.page(.post, "/hosts/\(hid)/desired", cookie: cookie, form: ["spec": #"{"guests":[]}"#])
            #expect(forged.status == .forbidden)
            // The kill switch from the dashboard: block, see it, unblock; suspend and resume a customer.
            #expect(try await client.page(.post, "/hosts/\(hid)/block", cookie: cookie, form: [:]).status == .forbidden)
            #expect(try await client.page(.post, "/hosts/\(hid)/block", cookie: cookie, form: ["csrf": csrf]).status == .seeOther)
            #expect(try await client.page(.get, "/hosts/\(hid)", cookie: cookie).html.contains("Unblock host"))
            #expect(try await h.hub.host(hid, by: .operator).blocked)
            #expect(try await client.page(.post, "/hosts/\(hid)/unblock", cookie: cookie, form: ["csrf": csrf]).status == .seeOther)
            #expect(try await !h.hub.host(hid, by: .operator).blocked)
            // Back up now / restore test now from the host page: CSRF-checked, refusals shown as a notice.
            #expect(try await client.page(.get, "/hosts/\(hid)", cookie: cookie).html.contains("Ask the box"))
            let ask = ["kind": "backup", "vmid": "100"]
            #expect(try await client.page(.post, "/hosts/\(hid)/requests", cookie: cookie, form: ask).status == .forbidden)
            let off = try await client.page(.post, "/hosts/\(hid)/requests", cookie: cookie, form: ask.merging(["csrf": csrf]) { a, _ in a })
            #expect(off.status == .seeOther && off.headers[.location]?.contains("Not%20requested") == true, "\(off.headers)")
            let withStorage = sampleDesired.replacingOccurrences(
                of: #""versions""#, with: #""storage_policy":{"backup_storage":"pbs-felhom"},"versions""#)
            _ = try await client.call(.put, "/api/v1/hosts/\(hid)/desired", key: operatorKey, body: withStorage)
            _ = try await client.call(.post, "/api/v1/hosts/\(hid)/desired/publish", key: operatorKey)
            let asked = try await client.page(
                .post, "/hosts/\(hid)/requests", cookie: cookie, form: ["csrf": csrf, "kind": "restore_test", "vmid": "101"])
            #expect(asked.status == .seeOther && asked.headers[.location]?.contains("requested") == true)
            let published = try await h.hub.desired(hostID: hid, by: .operator).spec?.requests ?? []
            #expect(published.map(\.kind) == [.restoreTest] && published.first?.vmid == 101)
            #expect(try await client.page(.post, "/customers/\(cid)/suspend", cookie: cookie, form: ["csrf": csrf]).status == .seeOther)
            #expect(try await client.page(.get, "/customers", cookie: cookie).html.contains("suspended"))
            #expect(try await client.page(.post, "/customers/\(cid)/resume", cookie: cookie, form: ["csrf": csrf]).status == .seeOther)
            #expect(try await client.page(.get, "/customers", cookie: cookie).html.contains(">Suspend</button>"))
            // Cancel a queued op from the queue page (CSRF-checked); a finished op shows no expiry.
            #expect(try await client.page(.post, "/signed-ops/\(opID)/cancel", cookie: cookie, form: [:]).status == .forbidden)
            #expect(try await client.page(.post, "/signed-ops/\(opID)/cancel", cookie: cookie, form: ["csrf": csrf]).status == .seeOther)
            #expect(try await h.hub.signedOp(opID, by: .operator).status == .cancelled)
            let queue = try await client.page(.get, "/signed-ops", cookie: cookie).html
            #expect(queue.contains(">cancelled<") && !queue.contains("/signed-ops/\(opID)/cancel") && !queue.contains(">in "))
            let bad = try await client.page(
                .post, "/hosts/\(hid)/desired", cookie: cookie,
                form: ["csrf": csrf, "spec": #"{"guests":[{"vmid":100,"name":"web","cpu":1,"memory_mb":0,"disk_gb":8}]}"#])
            #expect(bad.status == .badRequest && bad.html.contains("$.guests[0].memory_mb"))
            let saved = try await client.page(
                .post, "/hosts/\(hid)/desired", cookie: cookie,
                form: ["csrf": csrf, "spec": #"{"guests":[{"vmid":100,"name":"web","cpu":2,"memory_mb":4096,"disk_gb":8}]}"#])
            #expect(saved.status == .seeOther)
            #expect(try await client.page(.get, "/hosts/\(hid)/desired", cookie: cookie).html.contains("unpublished changes"))
            let pub = try await client.page(.post, "/hosts/\(hid)/desired/publish", cookie: cookie, form: ["csrf": csrf])
            // Generations: 1 first publish, 2 with backup storage, 3 the request, 4 this publish.
            #expect(pub.status == .seeOther && pub.headers[.location]?.contains("generation%204") == true)
            #expect(try await client.call(.get, "/api/v1/hosts/\(hid)", key: operatorKey).json?["desired_generation"] == 4)

            // Signing out ends the session.
            _ = try await client.page(.post, "/logout", cookie: cookie, form: ["csrf": csrf])
            #expect(try await client.page(.get, "/", cookie: cookie).status == .seeOther)
        }
        await h.hub.store.close()
    }
}

@Suite struct DashboardSignInLimitTests {
    @Test func everyTemplateCompiles() {
        #expect(Dashboard.templateErrors.isEmpty, "\(Dashboard.templateErrors)")
    }

    @Test func tooManyWrongKeysPauseTheFormNotTheAPI() async throws {
        let clock = ManualClock(start: Date())
        let h = try await HubHarness.make(.sqlite, clock: clock)
        try await h.app.test(.router) { client in
            for _ in 0..<10 { #expect(try await client.page(.post, "/login", form: ["key": "wrong"]).status == .unauthorized) }
            let locked = try await client.page(.post, "/login", form: ["key": operatorKey])
            #expect(locked.status == .tooManyRequests && locked.html.contains("paused"))
            #expect(locked.headers[.setCookie] == nil)
            #expect(try await client.call(.get, "/api/v1/hosts", key: operatorKey).status == .ok)
            clock.advance(by: 5 * 60 + 1)
            #expect(try await client.page(.post, "/login", form: ["key": operatorKey]).status == .seeOther)
        }
        await h.hub.store.close()
    }
}
