"""The ZhianTec frame codec: encoding, checksums, resynchronisation, image packing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kiosk.drivers.fingerprint.zhiantec_protocol import (
    DEFAULT_ADDRESS,
    HEADER,
    IMAGE_BYTES,
    IMAGE_SIZE,
    MAX_FRAME,
    Confirmation,
    FrameDecoder,
    FrameError,
    Instruction,
    Packet,
    PacketKind,
    ack,
    checksum,
    command,
    describe,
    encode_frame,
    pack_image,
    packet_size,
    unpack_image,
)


def test_verify_password_frame_matches_the_datasheet_bytes():
    # VfyPwd with password 0 to the default address, as every R307 example shows it
    frame = command(Instruction.VERIFY_PASSWORD, bytes(4)).encode()
    assert frame.hex(" ") == "ef 01 ff ff ff ff 01 00 07 13 00 00 00 00 00 1b"


def test_checksum_counts_identifier_length_and_payload_and_wraps_at_16_bits():
    assert checksum(PacketKind.ACK, b"\x00") == 0x07 + 0x00 + 0x03 + 0x00
    payload = b"\xff" * 256
    assert checksum(PacketKind.DATA, payload) == (2 + 1 + 2 + 255 * 256) & 0xFFFF


@pytest.mark.parametrize("kind", list(PacketKind))
@pytest.mark.parametrize("size", [0, 1, 32, 256])
def test_round_trip_every_kind_and_size(kind, size):
    packet = Packet(kind, bytes(i % 256 for i in range(size)), 0x1234)
    decoded = FrameDecoder().feed(packet.encode())
    assert decoded == [packet]
    assert isinstance(decoded[0].kind, PacketKind)


def test_encode_refuses_what_no_sensor_can_send():
    with pytest.raises(ValueError, match="identifier"):
        Packet(0x05, b"").encode()
    with pytest.raises(ValueError, match="exceeds"):
        Packet(PacketKind.DATA, bytes(257)).encode()
    with pytest.raises(ValueError, match="address"):
        Packet(PacketKind.COMMAND, b"\x01", address=1 << 32).encode()


def test_command_and_ack_helpers_join_parameters():
    store = command(Instruction.STORE, 1, (300).to_bytes(2, "big"))
    assert store == Packet(PacketKind.COMMAND, b"\x06\x01\x01\x2c", DEFAULT_ADDRESS)
    assert ack(Confirmation.NO_FINGER).payload == b"\x02"


def test_describe_known_and_unknown_codes():
    assert describe(0x02) == "no finger on the sensor"
    assert describe(Confirmation.BAD_NOTEPAD_PAGE) == "wrong notepad page number"
    assert describe(0x13) == "wrong password"
    assert describe(0x77) == "unknown confirmation code 0x77"
    assert all(describe(code) for code in Confirmation)


def test_confirmation_codes_match_the_datasheet():
    expected = {
        "OK": 0x00,
        "PACKET_ERROR": 0x01,
        "NO_FINGER": 0x02,
        "ENROLL_FAILED": 0x03,
        "DISORDERED_IMAGE": 0x06,
        "SMALL_IMAGE": 0x07,
        "NOT_MATCHING": 0x08,
        "NOT_FOUND": 0x09,
        "ENROLL_MISMATCH": 0x0A,
        "BAD_LOCATION": 0x0B,
        "UPLOAD_FAILED": 0x0D,
        "RECEIVE_FAILED": 0x0E,
        "UPLOAD_IMAGE_FAILED": 0x0F,
        "DELETE_FAILED": 0x10,
        "CLEAR_FAILED": 0x11,
        "WRONG_PASSWORD": 0x13,
        "INVALID_IMAGE": 0x15,
        "FLASH_ERROR": 0x18,
        "INVALID_REGISTER": 0x1A,
        "BAD_CONFIGURATION": 0x1B,
        "BAD_NOTEPAD_PAGE": 0x1C,
        "COMMUNICATION": 0x1D,
    }
    assert {name: Confirmation[name] for name in expected} == expected
    assert HEADER == 0xEF01


def test_stray_bytes_before_a_frame_are_skipped_and_counted():
    decoder = FrameDecoder()
    frame = ack(Confirmation.OK).encode()
    assert decoder.feed(b"\x00\xef\x55\x01" + frame) == [ack(Confirmation.OK)]
    assert decoder.skipped_bytes == 4
    assert decoder.buffered == 0


def test_frame_completed_over_many_feeds_one_byte_at_a_time():
    decoder = FrameDecoder()
    frame = Packet(PacketKind.DATA, bytes(range(128))).encode()
    results = []
    for i in range(len(frame)):
        results += decoder.feed(frame[i : i + 1])
        if i < len(frame) - 1:
            assert results == []
    assert results == [Packet(PacketKind.DATA, bytes(range(128)))]
    assert decoder.skipped_bytes == 0


def test_header_split_across_feeds_is_kept():
    decoder = FrameDecoder()
    frame = ack(Confirmation.OK).encode()
    assert decoder.feed(b"junk" + frame[:1]) == []
    assert decoder.feed(frame[1:]) == [ack(Confirmation.OK)]
    assert decoder.skipped_bytes == 4


def test_bad_checksum_is_an_error_and_the_next_frame_still_decodes():
    decoder = FrameDecoder()
    broken = bytearray(ack(Confirmation.OK).encode())
    broken[-1] ^= 0xFF
    good = ack(Confirmation.NO_FINGER).encode()
    out = decoder.feed(bytes(broken) + good)
    assert isinstance(out[0], FrameError) and "checksum" in str(out[0])
    assert (out[0].reason, out[0].address) == ("checksum", DEFAULT_ADDRESS)
    assert out[1:] == [ack(Confirmation.NO_FINGER)]


@pytest.mark.parametrize("length", [0, 1, 259, 0xFFFF])
def test_impossible_length_is_an_error_at_once(length):
    decoder = FrameDecoder()
    head = b"\xef\x01\xff\xff\xff\xff\x07" + length.to_bytes(2, "big")
    out = decoder.feed(head)
    assert len(out) == 1 and "length" in str(out[0]) and out[0].reason == "length"
    assert decoder.buffered == 0


def test_unknown_identifier_is_an_error():
    out = FrameDecoder().feed(b"\xef\x01\xff\xff\xff\xff\x05\x00\x03\x00\x00\x08")
    assert isinstance(out[0], FrameError) and "identifier" in str(out[0])
    assert out[0].reason == "identifier"


def test_real_frame_hidden_inside_a_frame_that_claims_to_be_long():
    # a header whose length swallows the next (good) frame: the good one is found on resync
    decoder = FrameDecoder()
    liar = b"\xef\x01\xff\xff\xff\xff\x02\x00\x40"
    good = ack(Confirmation.OK, b"\x00\x05").encode()
    out = decoder.feed(liar + good + bytes(64))
    assert [type(item) for item in out] == [FrameError, Packet]
    assert out[1] == ack(Confirmation.OK, b"\x00\x05")


def test_truncated_frame_followed_by_a_good_one():
    decoder = FrameDecoder()
    truncated = ack(Confirmation.OK, bytes(20)).encode()[:15]
    good = ack(Confirmation.NO_FINGER).encode()
    out = decoder.feed(truncated + good)
    out += decoder.feed(bytes(40))  # more bytes arrive: the truncated frame's checksum fails
    assert ack(Confirmation.NO_FINGER) in out
    assert any(isinstance(item, FrameError) for item in out)


def test_garbage_never_grows_the_buffer():
    rng = random.Random(7)
    decoder = FrameDecoder()
    for _ in range(2000):
        chunk = bytes(rng.choice((0xEF, 0x01, 0xFF, rng.randrange(256))) for _ in range(97))
        decoder.feed(chunk)
        assert decoder.buffered < MAX_FRAME
    frame = ack(Confirmation.OK).encode()
    # whatever was pending, a clean frame after a frame's worth of zeros decodes
    out = decoder.feed(bytes(MAX_FRAME) + frame)
    assert out[-1] == ack(Confirmation.OK)


def test_one_megabyte_of_garbage_in_one_feed():
    decoder = FrameDecoder()
    decoder.feed(b"\xef" * 1_000_000)
    assert decoder.buffered <= 1
    assert decoder.skipped_bytes >= 999_999


def test_reset_drops_a_partial_frame():
    decoder = FrameDecoder()
    decoder.feed(ack(Confirmation.OK).encode()[:8])
    decoder.reset()
    assert decoder.buffered == 0 and decoder.skipped_bytes == 8


def test_encode_frame_builds_oversized_frames_for_fault_injection():
    raw = encode_frame(PacketKind.DATA, bytes(300))
    out = FrameDecoder().feed(raw)
    assert out and isinstance(out[0], FrameError)


def test_image_nibbles_high_first_and_scaled_by_17():
    data = bytes([0x0F, 0xA5]) + bytes(IMAGE_BYTES - 2)
    image = unpack_image(data)
    assert image.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0]) and image.dtype == np.uint8
    assert list(image[0, :4]) == [0, 255, 170, 85]


def test_pack_unpack_round_trips():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, IMAGE_BYTES, dtype=np.uint8).tobytes()
    assert pack_image(unpack_image(data)) == data
    image = rng.integers(0, 256, (288, 256), dtype=np.uint8)
    packed = pack_image(image)
    assert len(packed) == IMAGE_BYTES
    error = np.abs(unpack_image(packed).astype(int) - image.astype(int))
    assert error.max() <= 8


def test_image_sizes_are_checked():
    with pytest.raises(ValueError, match="expected 36864"):
        unpack_image(bytes(100))
    with pytest.raises(ValueError, match="even width"):
        pack_image(np.zeros((4, 3), dtype=np.uint8))
    assert unpack_image(bytes(8), width=4, height=4).shape == (4, 4)


def test_packet_sizes():
    assert [packet_size(code) for code in range(4)] == [32, 64, 128, 256]
    with pytest.raises(ValueError):
        packet_size(4)
