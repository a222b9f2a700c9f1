//! A simulated device for the server tests: cloud-proto's `DeviceEndpoint` over a real
//! loopback UDP socket or TCP connection.
#![allow(dead_code)]

use std::time::Duration;

use cloud_proto::{
    stream_encode, stream_encoded_max, Counters, DeviceConfig, DeviceEndpoint, DeviceId, Down,
    Event, FirmwareVersion, Keys, ManifestRef, NackCode, Object, StreamDecoder, Up, UpdateId,
    MAX_FRAME,
};
use ota_core::{HardwareId, ImageParams, SecurityCounter, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

/// Guards against a hang only (a lost datagram on loopback is a failure); never asserted on.
pub const GUARD: Duration = Duration::from_secs(10);

pub const HW: &str = "tracker-v1";

pub fn signer() -> String {
    ota_tool::keys::private_key_to_pem(&ota_tool::keys::generate())
}

pub fn public_pem(signer_pem: &str) -> String {
    let kp = ota_tool::keys::private_key_from_pem(signer_pem).unwrap();
    ota_tool::keys::public_key_to_pem(&kp.pk)
}

pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8 ^ seed).collect()
}

/// An `ota-tool sign` container for `hw`, `version`, `img`.
pub fn container(signer_pem: &str, hw: &str, version: (u16, u16, u16), img: &[u8]) -> Vec<u8> {
    let kp = ota_tool::keys::private_key_from_pem(signer_pem).unwrap();
    let params = ImageParams {
        hardware_id: HardwareId::from_name(hw).unwrap(),
        version: Version::new(version.0, version.1, version.2),
        security_counter: SecurityCounter(1),
        chunk_size: 1024,
        base_digest: None,
    };
    ota_tool::Container::sign(&params, img, &kp)
        .unwrap()
        .encode()
}

pub fn fw(major: u16, minor: u16, patch: u16) -> FirmwareVersion {
    FirmwareVersion {
        major,
        minor,
        patch,
    }
}

/// What the server answered, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Welcome {
        offer: Option<Offer>,
        publishes_acked: u8,
    },
    Ack,
    Nack(NackCode),
    /// A chunk request's chunks, by index.
    Chunks(Vec<(u32, Vec<u8>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub update: UpdateId,
    pub version: FirmwareVersion,
    pub image_size: u32,
    /// `Some` when inline.
    pub manifest: Option<Vec<u8>>,
}

pub enum Link {
    Udp(UdpSocket),
    Tcp(
        TcpStream,
        Box<StreamDecoder<{ stream_encoded_max(MAX_FRAME) }>>,
    ),
}

impl Link {
    pub async fn udp(server: std::net::SocketAddr) -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(server).await.unwrap();
        Self::Udp(s)
    }

    pub async fn tcp(server: std::net::SocketAddr) -> Self {
        Self::Tcp(
            TcpStream::connect(server).await.unwrap(),
            Box::new(StreamDecoder::new()),
        )
    }

    pub async fn send(&mut self, frame: &[u8]) {
        match self {
            Self::Udp(s) => {
                s.send(frame).await.unwrap();
            }
            Self::Tcp(s, _) => {
                let mut out = vec![0u8; stream_encoded_max(MAX_FRAME)];
                let n = stream_encode(frame, &mut out).unwrap();
                s.write_all(&out[..n]).await.unwrap();
            }
        }
    }

    pub async fn recv(&mut self) -> Vec<u8> {
        tokio::time::timeout(GUARD, self.recv_inner())
            .await
            .expect("no answer from the server")
    }

    async fn recv_inner(&mut self) -> Vec<u8> {
        match self {
            Self::Udp(s) => {
                let mut buf = vec![0u8; 2048];
                let n = s.recv(&mut buf).await.unwrap();
                buf.truncate(n);
                buf
            }
            Self::Tcp(s, dec) => loop {
                let mut b = [0u8; 1];
                assert_eq!(s.read(&mut b).await.unwrap(), 1, "connection closed");
                if let (_, Some(r)) = dec.feed(&b) {
                    return r.unwrap().to_vec();
                }
            },
        }
    }
}

/// A device that wakes: a fresh endpoint from the counters it kept in "backup SRAM".
pub struct Device {
    pub id: DeviceId,
    pub root: [u8; 32],
    pub counters: Counters,
}

impl Device {
    pub fn new(id: DeviceId, root: [u8; 32]) -> Self {
        Self {
            id,
            root,
            counters: Counters::cold(0),
        }
    }

    /// One wake's endpoint (counters restored; reservations checkpointed as needed).
    pub fn wake(&self) -> DeviceEndpoint {
        DeviceEndpoint::new(
            DeviceConfig::new(self.id),
            Keys::derive(&self.root),
            self.counters,
        )
    }

    /// Sends `msg` and collects the full answer (all chunks of a chunk request).
    pub async fn request(&mut self, ep: &mut DeviceEndpoint, link: &mut Link, msg: &Up<'_>) -> Got {
        let frame = self.seal(ep, msg);
        link.send(&frame).await;
        self.collect(ep, link).await
    }

    /// Seals `msg` as the endpoint's next request (checkpointing the counter reservation
    /// first when due) and returns the frame.
    pub fn seal(&mut self, ep: &mut DeviceEndpoint, msg: &Up<'_>) -> Vec<u8> {
        if let Some(r) = ep.checkpoint() {
            ep.mark_checkpointed(r);
        }
        let t = ep.send(0, msg).unwrap();
        self.counters = t.counters;
        t.frame.to_vec()
    }

    /// Receives until the outstanding request completes; the first datagram must be accepted.
    pub async fn collect(&mut self, ep: &mut DeviceEndpoint, link: &mut Link) -> Got {
        let mut chunks = Vec::new();
        loop {
            let bytes = link.recv().await;
            match ep
                .handle_datagram(0, &bytes)
                .expect("answer refused by the device")
            {
                Event::Reply(Down::Welcome(w)) => {
                    return Got::Welcome {
                        offer: w.offer.map(|o| Offer {
                            update: o.update,
                            version: o.version,
                            image_size: o.image_size,
                            manifest: match o.manifest {
                                ManifestRef::Inline(m) => Some(m.to_vec()),
                                ManifestRef::Fetch { .. } => None,
                            },
                        }),
                        publishes_acked: w.publishes_acked,
                    }
                }
                Event::Reply(Down::Ack) => return Got::Ack,
                Event::Reply(Down::Nack(c)) => return Got::Nack(c),
                Event::Chunk {
                    index, data, done, ..
                } => {
                    chunks.push((index, data.to_vec()));
                    if done {
                        return Got::Chunks(chunks);
                    }
                }
            }
        }
    }
}

pub fn checkin(firmware: FirmwareVersion, download: Option<(UpdateId, u32)>) -> Up<'static> {
    use cloud_proto::{CheckIn, DownloadProgress, OtaReport, OtaState, UpdateResult};
    Up::CheckIn(CheckIn {
        firmware,
        trial: false,
        ota: OtaReport {
            state: if download.is_some() {
                OtaState::Downloading
            } else {
                OtaState::Idle
            },
            result: UpdateResult::Initial,
            download: download.map(|(update, bytes_done)| DownloadProgress { update, bytes_done }),
        },
        battery_mv: 3700,
        forced_sleeps: 0,
        publishes: heapless::Vec::new(),
    })
}

pub fn chunk_request(
    update: UpdateId,
    object: Object,
    size: u16,
    first: u32,
    count: u32,
) -> Up<'static> {
    let mut ranges = heapless::Vec::new();
    ranges
        .push(cloud_proto::ChunkRange { first, count })
        .unwrap();
    Up::ChunkRequest(cloud_proto::ChunkRequest {
        update,
        object,
        chunk_size: size,
        ranges,
    })
}
