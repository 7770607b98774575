"""Pictures of a model: the architecture diagram `keras.utils.plot_model` draws (`diagram`,
written as SVG by `svg` or painted as PNG by `raster`), and the self-contained HTML report
(`report`) with its charts (`charts`) and feature-map images (`png`)."""
