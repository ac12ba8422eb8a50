// Properties of `peerx::parse_frame` on arbitrary bytes:
// - never panics; `consumed` never exceeds the input; `Partial` asks for exactly what completes the
//   header or the declared frame; error offsets lie within the input;
// - a complete frame's metadata re-encodes to a frame that parses to the same metadata (round trip).

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use peerx::{Limits, Metadata, Status, encode_frame, parse_frame};
    let limits = Limits::default().max_payload(4096);
    match parse_frame(data, &limits) {
        Ok(Status::Complete { value, consumed }) => {
            assert!(consumed <= data.len() && consumed >= 8);
            let metadata = value.metadata();
            let _ = format!("{:?} {:?} {:?}", metadata, metadata.workload(), metadata.id());
            let owned = Metadata::from_view(&metadata);
            let mut again = Vec::new();
            encode_frame(&owned, &mut again).expect("re-encoding fits a Vec");
            let Ok(Status::Complete { value: back, consumed: n }) = parse_frame(&again, &Limits::unbounded_dangerous()) else {
                panic!("our own frame parses");
            };
            assert_eq!(n, again.len());
            let back = Metadata::from_view(&back.metadata());
            // NaN never equals itself; compare the canonical bytes instead.
            let mut twice = Vec::new();
            encode_frame(&back, &mut twice).expect("re-encoding fits a Vec");
            assert_eq!(again, twice, "encode(decode(encode(x))) is stable");
        }
        Ok(Status::Partial { needed }) => {
            let needed = needed.expect("frames always know their shortfall").get();
            assert!(needed > 0);
            if data.len() < 8 {
                assert_eq!(data.len() + needed, 8);
            }
        }
        Err(e) => assert!(e.offset() <= data.len() as u64, "{e:?}"),
    }
}
