//! The embedded-nal 0.9 TcpClientStack and UdpClientStack implementations.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use embedded_nal::{TcpClientStack, TcpError, TcpErrorKind, UdpClientStack};
use modem_ublox::{Family, SocketError};

#[test]
fn tcp_client_stack() {
    let (b, mut m) = booted(Family::U2);
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(52, 1, 2, 3)), 5684);
    b.push(at("AT+USOCR=6\r\n", info_ok("+USOCR: 0")));
    let mut s = TcpClientStack::socket(&mut m).unwrap();
    b.push(ok("AT+USOCO=0,\"52.1.2.3\",5684\r\n"));
    TcpClientStack::connect(&mut m, &mut s, remote).unwrap();
    b.push([
        tx("AT+USOWR=0,3\r\n"),
        rx("\r\n@"),
        tx("GET"),
        rx("\r\n+USOWR: 0,3\r\n\r\nOK\r\n"),
    ]);
    assert_eq!(TcpClientStack::send(&mut m, &mut s, b"GET"), Ok(3));
    // The modem takes nothing (`+USOWR: 0,0`) on the first try and three retries: WouldBlock.
    for _ in 0..4 {
        b.push([
            tx("AT+USOWR=0,1\r\n"),
            rx("\r\n@"),
            tx("/"),
            rx("\r\n+USOWR: 0,0\r\n\r\nOK\r\n"),
        ]);
    }
    assert_eq!(
        TcpClientStack::send(&mut m, &mut s, b"/"),
        Err(nb::Error::WouldBlock)
    );
    let mut buf = [0u8; 16];
    b.push(at("AT+USORD=0,0\r\n", info_ok("+USORD: 0,0")));
    assert_eq!(
        TcpClientStack::receive(&mut m, &mut s, &mut buf),
        Err(nb::Error::WouldBlock)
    );
    b.push([rx("\r\n+UUSORD: 0,2\r\n")]);
    b.push(at(
        "AT+USORD=0,2\r\n",
        "\r\n+USORD: 0,2,\"OK\"\r\n\r\nOK\r\n",
    ));
    m.poll(0).unwrap();
    assert_eq!(TcpClientStack::receive(&mut m, &mut s, &mut buf), Ok(2));
    assert_eq!(&buf[..2], b"OK");
    b.push([rx("\r\n+UUSOCL: 0\r\n")]);
    b.push(at("AT+USORD=0,0\r\n", "\r\n+CME ERROR: 3\r\n"));
    m.poll(0).unwrap();
    match TcpClientStack::receive(&mut m, &mut s, &mut buf) {
        Err(nb::Error::Other(e)) => {
            assert_eq!(e, SocketError::Closed);
            assert_eq!(e.kind(), TcpErrorKind::PipeClosed);
        }
        r => panic!("{r:?}"),
    }
    b.push(at("AT+USOCL=0\r\n", "\r\nOK\r\n"));
    TcpClientStack::close(&mut m, s).unwrap();
    b.done();
}

#[test]
fn udp_client_stack() {
    let (b, mut m) = booted(Family::R5);
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(185, 15, 72, 251)), 123);
    b.push(at("AT+USOCR=17\r\n", info_ok("+USOCR: 2")));
    let mut s = UdpClientStack::socket(&mut m).unwrap();
    UdpClientStack::connect(&mut m, &mut s, remote).unwrap(); // nothing sent
    b.push([
        tx("AT+USOST=2,\"185.15.72.251\",123,2\r\n"),
        rx("\r\n@"),
        tx("hi"),
    ]);
    b.push([rx("\r\n+USOST: 2,2\r\n\r\nOK\r\n")]);
    UdpClientStack::send(&mut m, &mut s, b"hi").unwrap();
    let mut buf = [0u8; 4];
    b.push(at("AT+USORF=2,0\r\n", info_ok("+USORF: 2,0")));
    assert_eq!(
        UdpClientStack::receive(&mut m, &mut s, &mut buf),
        Err(nb::Error::WouldBlock)
    );
    b.push([rx("\r\n+UUSORF: 2,6\r\n")]);
    b.push(at(
        "AT+USORF=2,1024\r\n",
        "\r\n+USORF: 2,\"185.15.72.251\",123,6,\"abcdef\"\r\n\r\nOK\r\n",
    ));
    m.poll(0).unwrap();
    // Truncated to the caller's buffer, sender reported.
    assert_eq!(
        UdpClientStack::receive(&mut m, &mut s, &mut buf),
        Ok((4, remote))
    );
    assert_eq!(&buf, b"abcd");
    // IPv6 and oversize datagrams are refused without talking to the modem.
    let v6 = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 1);
    assert_eq!(m.send_to(s, v6, b"x"), Err(SocketError::Unsupported));
    assert_eq!(m.send_to(s, remote, &[0; 1025]), Err(SocketError::TooLarge));
    // A datagram the modem confirms only in part is an error, not Ok.
    b.push([
        tx("AT+USOST=2,\"185.15.72.251\",123,5\r\n"),
        rx("\r\n@"),
        tx("hello"),
        rx("\r\n+USOST: 2,4\r\n\r\nOK\r\n"),
    ]);
    assert_eq!(
        UdpClientStack::send(&mut m, &mut s, b"hello"),
        Err(nb::Error::Other(SocketError::Truncated(4)))
    );
    b.push(ok("AT+USOCL=2\r\n"));
    UdpClientStack::close(&mut m, s).unwrap();
    b.done();
}
