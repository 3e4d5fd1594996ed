# The page of `foley serve` in headless Chromium (Debian's /usr/bin/chromium driven by npm
# playwright-core, pinned in tests/browser/package-lock.json): run.sh makes the tiny model bundle
# and a 2 s clip, starts `foley serve --port 0`, and generate.mjs uploads the clip through the
# page, follows the SSE progress and checks that the generated audio and the muxed video play,
# plus two error paths (a text file, a broken upload). Exits 77 (SKIP) without node, npm,
# Chromium or the ffmpeg CLI; in CI (CI=true) that is a failure (tests/cmake/skip_missing.sh).
# The screenshot is left at build/tests/browser/screenshot.png.
if(FOLEY_HTTP)
  add_test(NAME browser_generate
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/browser/run.sh
            ${PROJECT_SOURCE_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/browser
            $<TARGET_FILE:foley_cli>)
  set_tests_properties(browser_generate PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
    ENVIRONMENT "FOLEY_THREADS=2")
endif()
