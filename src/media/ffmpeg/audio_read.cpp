// read_audio with FFmpeg: any audio the allowed demuxers and decoders handle, as float samples.
#include "core/check.h"
#include "media/ffmpeg/av_util.h"

namespace foley {

AudioData read_audio(const std::string& path, const MediaLimits& limits) {
  using namespace media;
  av::Deadline deadline(limits.max_wall_sec);
  av::InputPtr fmt = av::open_input(path, limits, deadline);
  const int stream = av_find_best_stream(fmt.get(), AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0);
  if (stream < 0) throw Error(ErrorKind::kInvalidInput, "'" + path + "' has no audio stream");
  for (unsigned i = 0; i < fmt->nb_streams; ++i)
    if (int(i) != stream) fmt->streams[i]->discard = AVDISCARD_ALL;
  AVStream* st = fmt->streams[stream];
  const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!codec)
    throw make_error(ErrorKind::kUnsupported, "no decoder for audio codec %s",
                     avcodec_get_name(st->codecpar->codec_id));
  av::CodecPtr dec(avcodec_alloc_context3(codec));
  if (!dec) throw std::bad_alloc();
  int err = avcodec_parameters_to_context(dec.get(), st->codecpar);
  if (err >= 0) err = avcodec_open2(dec.get(), codec, nullptr);
  if (err < 0) av::fail(ErrorKind::kUnsupported, "cannot open the audio decoder", err);
  const int rate = dec->sample_rate, channels = dec->ch_layout.nb_channels;
  if (rate <= 0 || channels <= 0 || channels > 64)
    throw Error(ErrorKind::kInvalidInput, "audio stream has no valid rate or channel layout");

  // Everything becomes interleaved float at the stream's own rate and layout.
  SwrContext* raw = nullptr;
  err = swr_alloc_set_opts2(&raw, &dec->ch_layout, AV_SAMPLE_FMT_FLT, rate, &dec->ch_layout,
                            dec->sample_fmt, rate, 0, nullptr);
  av::SwrPtr swr(raw);
  if (err >= 0) err = swr_init(swr.get());
  if (err < 0) av::fail(ErrorKind::kUnsupported, "cannot convert the audio samples", err);

  AudioData out;
  out.sample_rate = rate;
  out.channels = channels;
  const size_t max_samples = size_t(limits.max_output_bytes / int64_t(sizeof(float)));
  av::PacketPtr pkt = av::alloc_packet();
  av::FramePtr frame = av::alloc_frame();
  bool eof = false;
  while (true) {
    deadline.check();
    err = avcodec_receive_frame(dec.get(), frame.get());
    if (err == AVERROR_EOF) break;
    if (err == 0) {
      const size_t at = out.samples.size();
      const size_t n = size_t(frame->nb_samples) * size_t(channels);
      if (at + n > max_samples)
        throw Error(ErrorKind::kUnsupported, "audio is larger than the memory limit");
      out.samples.resize(at + n);
      uint8_t* dst[] = {reinterpret_cast<uint8_t*>(out.samples.data() + at)};
      const int got =
          swr_convert(swr.get(), dst, frame->nb_samples,
                      const_cast<const uint8_t**>(frame->extended_data), frame->nb_samples);
      if (got < 0) av::fail(ErrorKind::kInvalidInput, "audio conversion failed", got);
      out.samples.resize(at + size_t(got) * size_t(channels));
      av_frame_unref(frame.get());
      continue;
    }
    if (err != AVERROR(EAGAIN)) av::fail(ErrorKind::kInvalidInput, "audio decoding failed", err);
    if (eof) break;
    av_packet_unref(pkt.get());
    err = av_read_frame(fmt.get(), pkt.get());
    if (err < 0) {
      deadline.check();
      eof = true;
      avcodec_send_packet(dec.get(), nullptr);
      continue;
    }
    if (pkt->stream_index != stream) continue;
    // A corrupt packet is skipped, as ffmpeg does.
    avcodec_send_packet(dec.get(), pkt.get());
  }
  return out;
}

}  // namespace foley
