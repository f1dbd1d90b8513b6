"""Face detection: the detector interface, BlazeFace, Haar, YuNet, SSD decoding and FER-framed crops."""
