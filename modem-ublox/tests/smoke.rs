mod common;
use common::*;
use modem_ublox::{Family, Model};

#[test]
fn boots_u260() {
    let (b, m) = booted(Family::U2);
    b.done();
    assert_eq!(m.model(), Some(Model::SaraU260));
    let p = b.script.pulses("PWR_ON");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].1, 60_000);
}
