//! The sign-in machine against a scripted server on loopback: every step, every refusal, and a
//! server that does not know the account's secret.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use super::*;
use crate::frame::Frame;
use crate::scram::{ClientHello, ServerFirst};

const T: Duration = Duration::from_secs(5);
const PASSWORD: &str = "correct horse";

fn user() -> Username {
    Username::new("alice").unwrap()
}

fn verifier(password: &str) -> Verifier {
    derive_verifier(password, b"0123456789abcdef", 4096)
}

fn framed(stream: TcpStream) -> FramedStream<TcpStream> {
    let peer = stream.peer_addr().unwrap().to_string();
    FramedStream::new(stream, peer)
}

/// A one-connection server running `script` on its end; returns the client's end.
fn serve(script: impl FnOnce(FramedStream<TcpStream>) + Send + 'static) -> FramedStream<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        script(framed(stream));
    });
    framed(TcpStream::connect(addr).unwrap())
}

fn soon() -> Instant {
    Instant::now() + T
}

#[test]
fn version_check_reads_the_server_hello() {
    let mut conn = serve(|mut s| {
        let ping: ConnectPing = s.read(soon()).unwrap();
        assert_eq!(ping.version, VERSION);
        let pong = ConnectReply::Pong {
            version: VERSION.into(),
            server_name: "lan chat".into(),
            registration: Registration::Closed,
        };
        s.send(&pong, soon()).unwrap();
    });
    let hello = version_check(&mut conn, VERSION, T).unwrap();
    assert_eq!(hello.name, "lan chat");
    assert_eq!(hello.registration, Registration::Closed);
}

#[test]
fn another_version_is_an_error_of_its_own() {
    let mut conn = serve(|mut s| {
        let _: ConnectPing = s.read(soon()).unwrap();
        let pong = ConnectReply::Pong {
            version: "GC/2".into(),
            server_name: "x".into(),
            registration: Registration::Open,
        };
        s.send(&pong, soon()).unwrap();
    });
    let err = version_check(&mut conn, VERSION, T).unwrap_err();
    assert!(matches!(&err, SignInError::Version { announced, .. } if announced == "GC/2"));
    assert_eq!(err.to_string(), "the server speaks GC/2, not GC/1");
}

#[test]
fn registration_meets_the_servers_minimum_once() {
    let mut conn = serve(|mut s| {
        for expected in [4096, 8192] {
            let AuthClient::Register { iterations, .. } = s.read(soon()).unwrap() else {
                panic!("expected Register");
            };
            assert_eq!(iterations, expected);
            let reply = if iterations < 8192 {
                AuthServer::Err(ErrorFrame::new(
                    ErrorCode::Malformed,
                    texts::iterations_below_minimum(iterations, 8192),
                ))
            } else {
                AuthServer::Registered
            };
            s.send(&reply, soon()).unwrap();
        }
    });
    let used = register_with_password(&mut conn, &user(), PASSWORD, 4096, T).unwrap();
    assert_eq!(used, 8192);
}

#[test]
fn a_refused_registration_names_the_step_and_the_code() {
    let mut conn = serve(|mut s| {
        let _: AuthClient = s.read(soon()).unwrap();
        let reply = AuthServer::Err(ErrorFrame::new(ErrorCode::Exists, "taken"));
        s.send(&reply, soon()).unwrap();
    });
    let err = register_with_password(&mut conn, &user(), PASSWORD, 4096, T).unwrap_err();
    assert!(matches!(
        &err,
        SignInError::Refused { step: Step::Registration, error } if error.code == ErrorCode::Exists
    ));
    assert_eq!(
        err.to_string(),
        "the server refused the registration (exists): taken"
    );
}

/// The server side of a login: answers `AuthRequest` with a challenge for `account`, reads the
/// proof, calls back on `callback` with the signature (or a forged one), then answers.
fn login_server(
    account: Verifier,
    callback: SocketAddr,
    forge: bool,
    mut s: FramedStream<TcpStream>,
) {
    let AuthClient::AuthRequest { client_first, .. } = s.read(soon()).unwrap() else {
        panic!("expected AuthRequest");
    };
    let hello = ClientHello::parse(&client_first).unwrap();
    let first = ServerFirst::new(&hello, &account).unwrap();
    let auth1 = AuthServer::Auth1 {
        server_first: first.message().to_owned(),
    };
    s.send(&auth1, soon()).unwrap();
    let AuthClient::Proof { client_final } = s.read(soon()).unwrap() else {
        panic!("expected Proof");
    };
    let server_final = match first.handle_client_final(&client_final) {
        Ok(server_final) => server_final,
        Err(_) => {
            let refusal = AuthServer::Err(ErrorFrame::new(ErrorCode::Auth, "wrong password"));
            s.send(&refusal, soon()).unwrap();
            return;
        }
    };
    let server_final = if forge {
        "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()
    } else {
        server_final
    };
    let mut cb = framed(TcpStream::connect(callback).unwrap());
    let authed = Authed {
        server_final,
        token: SessionToken::new("ab".repeat(32)).unwrap(),
    };
    cb.send(&authed, soon()).unwrap();
    let answer = match cb.read::<CallbackReply>(soon()).unwrap() {
        CallbackReply::Thx => AuthServer::Ok {
            heartbeat_ms: 1000,
            latest_id: 42,
        },
        CallbackReply::Err(e) => AuthServer::Err(ErrorFrame::new(e.code, "relayed")),
    };
    s.send(&answer, soon()).unwrap();
}

const PORTS: CallbackPorts = CallbackPorts {
    auth: 1,
    heartbeat: 2,
    delivery: 3,
};

/// Signs in against [`login_server`], serving the callback on this thread as the bench does.
fn sign_in(password: &str, forge: bool) -> Result<SignedIn, SignInError> {
    let callbacks = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = callbacks.local_addr().unwrap();
    let account = verifier(PASSWORD);
    let mut conn = serve(move |s| login_server(account, at, forge, s));
    let challenge = request_login(
        &mut conn,
        &user(),
        PORTS,
        &Channel::Plain,
        SessionLevel::Base,
        T,
    )?;
    assert_eq!(
        challenge.salt_and_iterations()?,
        (b"0123456789abcdef".to_vec(), 4096)
    );
    let proof = challenge.prove(password, 4096)?;
    let check = proof.callback_check();
    let awaiting = proof.send(&mut conn, T)?;
    let callback = if password == PASSWORD {
        let (stream, _) = callbacks.accept().unwrap();
        Some(check.serve(&mut framed(stream), T).map_err(|e| match e {
            SignInError::ServerSignature(s) => s,
            other => panic!("{other:?}"),
        }))
    } else {
        None
    };
    awaiting.finish(&mut conn, T, |_| callback)
}

#[test]
fn a_login_gets_its_token_from_the_verified_callback() {
    let signed_in = sign_in(PASSWORD, false).unwrap();
    assert_eq!(signed_in.token.as_str(), "ab".repeat(32));
    assert_eq!((signed_in.heartbeat_ms, signed_in.latest_id), (1000, 42));
}

#[test]
fn a_server_that_cannot_sign_is_never_trusted() {
    let err = sign_in(PASSWORD, true).unwrap_err();
    assert!(
        matches!(
            err,
            SignInError::ServerSignature(ScramError::BadServerSignature)
        ),
        "{err:?}"
    );
}

#[test]
fn a_wrong_password_is_a_refused_login() {
    let err = sign_in("wrong", false).unwrap_err();
    assert!(matches!(
        &err,
        SignInError::Refused { step: Step::Login, error } if error.code == ErrorCode::Auth
    ));
}

#[test]
fn ok_without_a_callback_breaks_the_protocol() {
    // The server answers the proof with `Ok` although no callback came.
    let mut conn = serve(|mut s| {
        let ok = AuthServer::Ok {
            heartbeat_ms: 1,
            latest_id: 0,
        };
        s.send(&ok, soon()).unwrap();
    });
    let mut answered_ok = false;
    let err = AwaitingOk { _sent: () }
        .finish(&mut conn, T, |ok| {
            answered_ok = ok;
            None
        })
        .unwrap_err();
    assert!(answered_ok);
    assert!(
        matches!(&err, SignInError::Unexpected { detail, .. } if detail.contains("never proved")),
        "{err:?}"
    );
}

#[test]
fn a_forged_authed_gets_err_auth_and_the_genuine_one_thx() {
    let account = verifier(PASSWORD);
    let first = ClientFirst::new("alice").unwrap();
    let hello = ClientHello::parse(first.message()).unwrap();
    let server = ServerFirst::new(&hello, &account).unwrap();
    let challenge = Challenge {
        first,
        server_first: server.message().to_owned(),
    };
    let proof = challenge.prove(PASSWORD, 4096).unwrap();
    let check = proof.callback_check();
    let genuine = server
        .handle_client_final(proof.client_final.message())
        .unwrap();
    let token = SessionToken::new("cd".repeat(32)).unwrap();
    let forged = Authed {
        server_final: "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        token: token.clone(),
    };
    let (reply, result) = check.check(forged);
    match reply {
        CallbackReply::Err(e) => {
            assert_eq!(e.code, ErrorCode::Auth);
            assert!(e.text.contains("does not trust this server"), "{}", e.text);
        }
        other => panic!("{other:?}"),
    }
    assert!(result.is_err());
    let (reply, result) = check.check(Authed {
        server_final: genuine,
        token: token.clone(),
    });
    assert_eq!(reply, CallbackReply::Thx);
    assert_eq!(result.unwrap(), token);
}

#[test]
fn a_hostile_iteration_count_is_refused_before_any_work() {
    let first = ClientFirst::new("alice").unwrap();
    let nonce = first.message().split("r=").nth(1).unwrap().to_owned();
    for iterations in [1, MAX_SCRAM_ITERATIONS + 1] {
        let challenge = Challenge {
            first: ClientFirst::with_nonce("alice", &nonce),
            server_first: format!("r={nonce}xyz,s=c2FsdA==,i={iterations}"),
        };
        let err = challenge.prove(PASSWORD, 4096).unwrap_err();
        assert!(
            matches!(err, SignInError::Scram(ScramError::Iterations { got, .. }) if got == iterations),
            "{err:?}"
        );
    }
    drop(first);
}

#[test]
fn the_request_frames_are_the_protocols() {
    // What goes out on the auth port is the frame codec's own encoding.
    let mut conn = serve(|mut s| {
        let line = s.read_line(soon()).unwrap().to_vec();
        assert!(line.starts_with(b"AuthRequest alice 1 2 3 "), "{line:?}");
        let reply = AuthServer::Err(ErrorFrame::new(ErrorCode::UnknownUser, "no such user"));
        s.write_all(&reply.to_bytes(), soon()).unwrap();
    });
    let err = request_login(
        &mut conn,
        &user(),
        PORTS,
        &Channel::Plain,
        SessionLevel::Base,
        T,
    )
    .unwrap_err();
    assert!(matches!(
        &err,
        SignInError::Refused { step: Step::Login, error } if error.code == ErrorCode::UnknownUser
    ));
}

#[test]
fn over_tls_the_request_binds_the_login_and_names_the_callback_certificate() {
    let callback = Fingerprint::of_der(b"the client's callback certificate");
    let mut conn = serve(move |mut s| {
        let AuthClient::AuthRequest {
            client_first,
            callback_fingerprint,
            level,
            ..
        } = s.read(soon()).unwrap()
        else {
            panic!("expected AuthRequest");
        };
        assert!(
            client_first.starts_with("p=tls-exporter,,n=alice,r="),
            "{client_first}"
        );
        assert_eq!(callback_fingerprint, Some(callback));
        assert_eq!(level, SessionLevel::Base, "no GC/3 unless asked for");
        // The server's side of the same session accepts it.
        ClientHello::parse_bound(&client_first, &Binding::TlsExporter([9; 32])).unwrap();
        let reply = AuthServer::Err(ErrorFrame::new(ErrorCode::UnknownUser, "no"));
        s.send(&reply, soon()).unwrap();
    });
    let channel = Channel::Tls {
        binding: [9; 32],
        callback_fingerprint: callback,
    };
    assert_eq!(channel.version(), "GC/2");
    let err =
        request_login(&mut conn, &user(), PORTS, &channel, SessionLevel::Base, T).unwrap_err();
    assert!(matches!(err, SignInError::Refused { .. }), "{err:?}");
}

#[test]
fn asking_for_rooms_ends_the_request_with_the_version() {
    // A GC/3 session is asked for with `GC/3` as the request's last field, after the callback
    // fingerprint over TLS; a GC/4 one with `GC/4` in the same place.
    let callback = Fingerprint::of_der(b"the client's callback certificate");
    for (channel, level) in [
        (Channel::Plain, SessionLevel::Rooms),
        (Channel::Plain, SessionLevel::Gc4),
        (
            Channel::Tls {
                binding: [9; 32],
                callback_fingerprint: callback,
            },
            SessionLevel::Rooms,
        ),
        (
            Channel::Tls {
                binding: [9; 32],
                callback_fingerprint: callback,
            },
            SessionLevel::Gc4,
        ),
    ] {
        let tls = channel != Channel::Plain;
        let version = level.version().unwrap();
        let mut conn = serve(move |mut s| {
            let line = s.read_line(soon()).unwrap().to_vec();
            let text = String::from_utf8(line).unwrap();
            let ending = if tls {
                format!(" {callback} {version}")
            } else {
                format!(" {version}")
            };
            assert!(text.ends_with(&ending), "{text}");
            let request = AuthClient::parse(text.as_bytes()).unwrap();
            assert!(matches!(
                request,
                AuthClient::AuthRequest { level: l, .. } if l == level
            ));
            let reply = AuthServer::Err(ErrorFrame::new(ErrorCode::UnknownUser, "no"));
            s.send(&reply, soon()).unwrap();
        });
        let err = request_login(&mut conn, &user(), PORTS, &channel, level, T).unwrap_err();
        assert!(matches!(err, SignInError::Refused { .. }), "{err:?}");
    }
}
