//! `viasock client SOCKET`: stream stdin through an explicit server.

use crate::cli::ClientArgs;
use crate::core::autostart::Connection;
use crate::core::client::{self, Handshake};
use crate::core::protocol::Purpose;
use crate::core::{Fatal, status};

pub fn client(args: &ClientArgs) -> anyhow::Result<i32> {
    let unavailable = |m: String| Fatal::new(status::UNAVAILABLE, m);
    let shown = args.socket.display();
    let mut stream = client::connect(&args.socket, client::HANDSHAKE_WAIT)
        .map_err(|e| unavailable(format!("cannot connect to {shown}: {e}")))?
        .ok_or_else(|| unavailable(format!("no server is listening at {shown}")))?;
    match client::handshake(&mut stream, Purpose::Run, &[], &[], client::HANDSHAKE_WAIT) {
        Ok(Handshake::Welcome(server_pid)) => {
            crate::cli::run::finish(Connection { stream, server_pid }, false, None, None)
        }
        Ok(Handshake::Closed) => {
            Err(unavailable(format!("the server at {shown} is shutting down")).into())
        }
        Err(e) => Err(unavailable(format!("handshake with {shown} failed: {e}")).into()),
    }
}
